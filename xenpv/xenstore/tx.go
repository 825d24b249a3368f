package xenstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// Tx is a xenstore transaction: reads see a snapshot taken at Begin,
// writes become visible (and fire watches) only at Commit, and Commit
// fails with EAGAIN if anything it depends on changed meanwhile. The
// operations mirror Client's. A Tx is safe for concurrent use, though its
// operations are ordered only by the caller.
type Tx struct {
	c     *Client
	id    uint32      // 0: no transaction (the Client's own view)
	ended atomic.Bool // Commit or Abort was sent
}

// ID returns the transaction id xenstored assigned (0 outside a
// transaction).
func (tx *Tx) ID() uint32 { return tx.id }

// MaxTransactionAttempts bounds how often Transaction retries a function
// whose commit keeps conflicting, so that a busy or hostile xenstored
// cannot keep a caller looping forever.
const MaxTransactionAttempts = 64

// Begin starts a transaction. The caller must end it with Commit or
// Abort: xenstored limits open transactions per domain.
func (c *Client) Begin(ctx context.Context) (*Tx, error) {
	p, err := c.request(ctx, TypeTransactionStart, 0, []byte{0}, c.abortLate)
	if err != nil {
		return nil, err
	}
	id, err := parseTxID(p)
	if err != nil {
		return nil, err
	}
	return &Tx{c: c, id: id}, nil
}

// abortLate ends a transaction whose TRANSACTION_START reply arrived after
// the caller gave up, so it does not linger in xenstored.
func (c *Client) abortLate(m Message) {
	if m.Type != TypeTransactionStart {
		return
	}
	if id, err := parseTxID(m.Payload); err == nil {
		tx := &Tx{c: c, id: id}
		tx.end(context.Background(), false)
	}
}

func parseTxID(p []byte) (uint32, error) {
	s, err := singleString(p)
	if err != nil {
		return 0, err
	}
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("xenstore: bad transaction id %q: %w", truncate(s), ErrProtocol)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("xenstore: bad transaction id %q: %w", truncate(s), ErrProtocol)
	}
	return uint32(n), nil
}

// Commit ends the transaction, applying its writes. An error that
// errors.Is syscall.EAGAIN means another change conflicted: run the whole
// transaction again (Transaction does that).
func (tx *Tx) Commit(ctx context.Context) error { return tx.end(ctx, true) }

// Abort ends the transaction, discarding its writes.
func (tx *Tx) Abort(ctx context.Context) error { return tx.end(ctx, false) }

func (tx *Tx) end(ctx context.Context, commit bool) error {
	if tx.id == 0 {
		return errLocal("EINVAL", "not in a transaction")
	}
	if tx.ended.Swap(true) {
		return errLocal("EINVAL", "transaction %d already ended", tx.id)
	}
	arg := "F"
	if commit {
		arg = "T"
	}
	err := ack(tx.c.request(ctx, TypeTransactionEnd, tx.id, joinStrings(arg), nil))
	if errors.As(err, new(notSent)) {
		tx.ended.Store(false) // never sent: the transaction is still open
	}
	return err
}

// endTimeout bounds aborting a transaction after the caller's context has
// ended: the abort is still sent, because an open transaction holds one of
// the few slots xenstored grants a domain.
const endTimeout = 10 * time.Second

// abortDetached aborts tx if it is still open, even if ctx has ended.
func (tx *Tx) abortDetached(ctx context.Context) error {
	if tx.ended.Load() {
		return nil
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	defer cancel()
	return tx.Abort(actx)
}

// Transaction runs fn in a transaction and commits it. If the commit (or
// any operation in fn) fails with EAGAIN, the whole of fn runs again in a
// fresh transaction, up to MaxTransactionAttempts times: fn must therefore
// not have effects outside tx that cannot be repeated. If fn returns any
// other error, the transaction is aborted and that error returned.
func (c *Client) Transaction(ctx context.Context, fn func(tx *Tx) error) error {
	var err error
	for attempt := 0; attempt < MaxTransactionAttempts; attempt++ {
		var tx *Tx
		tx, err = c.Begin(ctx)
		if err != nil {
			return err
		}
		if err = fn(tx); err != nil {
			if aerr := tx.abortDetached(ctx); aerr != nil && c.Err() != nil {
				return errors.Join(err, aerr)
			}
			if errors.Is(err, syscall.EAGAIN) {
				if err := conflictBackoff(ctx, attempt); err != nil {
					return err
				}
				continue
			}
			return err
		}
		if tx.ended.Load() {
			return errLocal("EINVAL", "transaction function ended its transaction itself")
		}
		if err = tx.Commit(ctx); err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EAGAIN) {
			tx.abortDetached(ctx) // only if the commit was never sent
			return err
		}
		if err := conflictBackoff(ctx, attempt); err != nil {
			return err
		}
	}
	return fmt.Errorf("xenstore: transaction still conflicting after %d attempts: %w", MaxTransactionAttempts, err)
}

// conflictBackoff waits a random while before attempt+1 of a transaction
// whose commit conflicted: up to 100 us times the attempts so far, at most
// 10 ms. Clients that retry at once keep conflicting with each other (one
// lost all 64 attempts to three others under load); spread out, each gets
// its turn.
func conflictBackoff(ctx context.Context, attempt int) error {
	max := min(time.Duration(attempt+1)*100*time.Microsecond, 10*time.Millisecond)
	t := time.NewTimer(rand.N(max) + 1)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (tx *Tx) usable() error {
	if tx.id != 0 && tx.ended.Load() {
		return errLocal("EINVAL", "transaction %d already ended", tx.id)
	}
	return nil
}

// pathRequest sends a request whose payload is path| and returns the reply.
func (tx *Tx) pathRequest(ctx context.Context, typ MsgType, path string) ([]byte, error) {
	if err := tx.usable(); err != nil {
		return nil, err
	}
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	return tx.c.request(ctx, typ, tx.id, joinStrings(path), nil)
}

// Read returns the value at path.
func (tx *Tx) Read(ctx context.Context, path string) (string, error) {
	p, err := tx.pathRequest(ctx, TypeRead, path)
	return string(p), err
}

// Exists reports whether path exists (a READ that fails with ENOENT says
// no; any other failure is returned).
func (tx *Tx) Exists(ctx context.Context, path string) (bool, error) {
	_, err := tx.Read(ctx, path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	return false, err
}

// Write stores value at path.
func (tx *Tx) Write(ctx context.Context, path, value string) error {
	if err := tx.usable(); err != nil {
		return err
	}
	if err := ValidatePath(path); err != nil {
		return err
	}
	if n := len(path) + 1 + len(value); n > PayloadMax {
		return errLocal("E2BIG", "write of %d bytes to %q exceeds %d", n, truncate(path), PayloadMax)
	}
	payload := make([]byte, 0, len(path)+1+len(value))
	payload = append(payload, path...)
	payload = append(payload, 0)
	payload = append(payload, value...) // no terminator: values are binary
	return ack(tx.c.request(ctx, TypeWrite, tx.id, payload, nil))
}

// Mkdir makes sure path exists.
func (tx *Tx) Mkdir(ctx context.Context, path string) error {
	return ack(tx.pathRequest(ctx, TypeMkdir, path))
}

// Rm removes path and everything below it.
func (tx *Tx) Rm(ctx context.Context, path string) error {
	return ack(tx.pathRequest(ctx, TypeRm, path))
}

// Directory returns the names of path's children. A listing too long for
// one reply (E2BIG) is fetched in parts with DIRECTORY_PART.
func (tx *Tx) Directory(ctx context.Context, path string) ([]string, error) {
	p, err := tx.pathRequest(ctx, TypeDirectory, path)
	if err != nil {
		if errors.Is(err, syscall.E2BIG) {
			return tx.directoryParts(ctx, path)
		}
		return nil, err
	}
	return parseNames(p)
}

// parseNames parses a DIRECTORY reply: zero or more NUL-terminated names.
func parseNames(p []byte) ([]string, error) {
	names, err := splitStrings(p)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := validateName(n); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// Bounds on DIRECTORY_PART, so a server that keeps sending parts or keeps
// changing the node cannot make the client loop or allocate forever.
const (
	maxDirectoryBytes   = 1 << 20
	maxDirectoryRetries = 8
)

// directoryParts implements the DIRECTORY_PART loop: request the child
// list from byte offset off; each reply is "<gencnt>|" and the next piece
// of the list; the list ends with an empty name (a doubled NUL). If the
// node's generation changes midway, start again.
func (tx *Tx) directoryParts(ctx context.Context, path string) ([]string, error) {
	for retry := 0; retry < maxDirectoryRetries; retry++ {
		var list []byte
		gen := ""
		for {
			off := strconv.Itoa(len(list))
			p, err := tx.pathRequestArgs(ctx, TypeDirectoryPart, path, off)
			if err != nil {
				if errors.Is(err, syscall.ENOSYS) {
					// Server without DIRECTORY_PART: report the original error.
					return nil, errLocal("E2BIG", "directory %q too large and server lacks DIRECTORY_PART", truncate(path))
				}
				return nil, err
			}
			i := 0
			for i < len(p) && p[i] != 0 {
				i++
			}
			if i == len(p) || i == 0 || i > 20 {
				return nil, fmt.Errorf("xenstore: DIRECTORY_PART reply without generation count: %w", ErrProtocol)
			}
			g := string(p[:i])
			part := p[i+1:]
			if len(list) == 0 {
				gen = g
			} else if g != gen {
				list = nil
				break // node changed: restart
			}
			if len(part) == 0 {
				return nil, fmt.Errorf("xenstore: empty DIRECTORY_PART at offset %s: %w", off, ErrProtocol)
			}
			if len(list)+len(part) > maxDirectoryBytes {
				return nil, fmt.Errorf("xenstore: directory listing over %d bytes: %w", maxDirectoryBytes, ErrProtocol)
			}
			list = append(list, part...)
			if len(list) == 1 && list[0] == 0 {
				return nil, nil // no children
			}
			if len(list) >= 2 && list[len(list)-1] == 0 && list[len(list)-2] == 0 {
				return parseNames(list[:len(list)-1])
			}
		}
	}
	return nil, errLocal("EAGAIN", "directory %q kept changing while listed", truncate(path))
}

func (tx *Tx) pathRequestArgs(ctx context.Context, typ MsgType, path string, args ...string) ([]byte, error) {
	if err := tx.usable(); err != nil {
		return nil, err
	}
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	return tx.c.request(ctx, typ, tx.id, joinStrings(append([]string{path}, args...)...), nil)
}

// GetPerms returns path's permissions.
func (tx *Tx) GetPerms(ctx context.Context, path string) ([]Perm, error) {
	p, err := tx.pathRequest(ctx, TypeGetPerms, path)
	if err != nil {
		return nil, err
	}
	return parsePerms(p)
}

func parsePerms(p []byte) ([]Perm, error) {
	ss, err := splitStrings(p)
	if err != nil {
		return nil, err
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("xenstore: empty permission list: %w", ErrProtocol)
	}
	perms := make([]Perm, len(ss))
	for i, s := range ss {
		if perms[i], err = ParsePerm(s); err != nil {
			return nil, fmt.Errorf("%v: %w", err, ErrProtocol)
		}
	}
	return perms, nil
}

// SetPerms replaces path's permissions.
func (tx *Tx) SetPerms(ctx context.Context, path string, perms []Perm) error {
	if len(perms) == 0 {
		return errLocal("EINVAL", "no permissions given for %q", truncate(path))
	}
	args := make([]string, len(perms))
	for i, p := range perms {
		switch p.Access {
		case AccessNone, AccessRead, AccessWrite, AccessReadWrite:
		default:
			return errLocal("EINVAL", "bad access %q", rune(p.Access))
		}
		args[i] = p.String()
	}
	return ack(tx.pathRequestArgs(ctx, TypeSetPerms, path, args...))
}

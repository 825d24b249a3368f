package qubesdb

import (
	"context"
	"fmt"
	"io"
)

// Options tune a Client or Server. The zero value is usable.
type Options struct {
	// MaxBytes bounds the database (sum of key and value lengths);
	// 0 means DefaultMaxBytes. A peer that pushes past it is cut off.
	MaxBytes int
}

// Client is the VM side of QubesDB: a synchronized copy of dom0's
// database. All methods are safe for concurrent use.
type Client struct {
	l  *link
	db *store
}

// Connect runs the initial synchronization over rwc (MULTIREAD with an
// empty path, then every entry until dom0's empty-path end marker) and
// starts following dom0's pushes. It takes ownership of rwc: Close, a
// failure, or ctx ending before the copy is complete closes it.
func Connect(ctx context.Context, rwc io.ReadWriteCloser, opts Options) (*Client, error) {
	c := &Client{l: newLink(rwc), db: newStore(opts.MaxBytes)}
	stop := context.AfterFunc(ctx, func() { c.l.fail(fmt.Errorf("qubesdb: initial sync: %w", ctx.Err())) })
	err := c.sync(ctx)
	if !stop() && err == nil {
		err = c.l.Err()
	}
	if err != nil {
		c.l.fail(err)
		c.db.closeWatchers()
		return nil, c.l.Err()
	}
	go c.readLoop()
	return c, nil
}

func (c *Client) sync(ctx context.Context) error {
	f, err := encode(CmdMultiread, "", nil)
	if err != nil {
		return err
	}
	if err := c.l.send(ctx, f); err != nil {
		return err
	}
	buf := make([]byte, MaxData)
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	for {
		m, err := readMessage(c.l.rwc, buf)
		if err != nil {
			if c.l.Err() != nil {
				return c.l.Err()
			}
			return fmt.Errorf("qubesdb: initial sync: %w", eofToUnexpected(err))
		}
		if m.Type != RespMultiread {
			return fmt.Errorf("qubesdb: initial sync: got %s %q, want RESP_MULTIREAD", m.Type, m.Path)
		}
		if m.Path == "" {
			if m.DataLen != 0 {
				return fmt.Errorf("qubesdb: initial sync: end marker carries %d data bytes", m.DataLen)
			}
			return nil
		}
		if err := CheckKey(m.Path); err != nil {
			return fmt.Errorf("qubesdb: initial sync: %w", err)
		}
		if err := CheckValue(m.Data); err != nil {
			return fmt.Errorf("qubesdb: initial sync of %q: %w", m.Path, err)
		}
		if err := c.db.writeLocked(m.Path, string(m.Data)); err != nil {
			return err
		}
	}
}

// readLoop follows dom0 after the initial sync: pushed WRITE and RM update
// the copy and are answered RESP_OK echoing the path; responses complete
// this side's requests. Anything else ends the connection.
func (c *Client) readLoop() {
	buf := make([]byte, MaxData)
	var err error
	for err == nil {
		var m message
		m, err = readMessage(c.l.rwc, buf)
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("qubesdb: dom0 closed the connection: %w", ErrClosed)
			}
			break
		}
		err = c.handle(m)
	}
	c.l.fail(err)
	c.db.closeWatchers()
}

func (c *Client) handle(m message) error {
	switch m.Type {
	case CmdWrite:
		if err := CheckKey(m.Path); err != nil {
			return err
		}
		if err := CheckValue(m.Data); err != nil {
			return fmt.Errorf("qubesdb: dom0 write of %q: %w", m.Path, err)
		}
		// The answer is queued before the change reaches the watches:
		// a program that closes the client on seeing it (Close sends
		// what is queued) must not leave dom0's write unanswered.
		c.db.mu.Lock()
		defer c.db.mu.Unlock()
		if _, err := c.db.sizeAfterLocked(m.Path, string(m.Data)); err != nil {
			return err
		}
		if err := c.ack(m.Path); err != nil {
			return err
		}
		return c.db.writeLocked(m.Path, string(m.Data))
	case CmdRm:
		if m.DataLen != 0 {
			return fmt.Errorf("qubesdb: dom0 RM %q carries %d data bytes", m.Path, m.DataLen)
		}
		if err := checkRmPath(m.Path); err != nil {
			return err
		}
		// Removing nothing is answered RESP_OK too: the copy already has
		// the state dom0 wants, and dom0's daemon treats any other answer
		// on the link as fatal.
		// Answered first, as a write is.
		if err := c.ack(m.Path); err != nil {
			return err
		}
		c.db.mu.Lock()
		c.db.rmLocked(m.Path)
		c.db.mu.Unlock()
		return nil
	case RespOK, RespError, RespErrorNoEnt:
		return c.l.complete(m.Header, len(m.Data))
	default:
		return fmt.Errorf("qubesdb: unexpected %s %q from dom0", m.Type, m.Path)
	}
}

func (c *Client) ack(path string) error {
	f, err := encode(RespOK, path, nil)
	if err != nil {
		return err
	}
	return c.l.sendNoWait(f)
}

// Read returns the value of key from the local copy.
func (c *Client) Read(key string) (string, bool) { return c.db.read(key) }

// List returns the keys starting with prefix, sorted.
func (c *Client) List(prefix string) []string { return c.db.list(prefix) }

// Multiread returns the entries whose keys start with prefix, sorted.
func (c *Client) Multiread(prefix string) []Entry { return c.db.multiread(prefix) }

// Write stores key=value in dom0's database and waits for dom0's answer;
// the local copy changes (and watches fire) when dom0 confirms. If ctx
// ends after the request went out, Write returns ctx's error but dom0's
// answer is still applied when it comes.
func (c *Client) Write(ctx context.Context, key, value string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := CheckValue([]byte(value)); err != nil {
		return fmt.Errorf("qubesdb: write %q: %w", key, err)
	}
	f, err := encode(CmdWrite, key, []byte(value))
	if err != nil {
		return err
	}
	p, err := c.l.start(ctx, f, key, func() error {
		c.db.mu.Lock()
		defer c.db.mu.Unlock()
		// Failing here means dom0 took more than our copy may hold.
		return c.db.writeLocked(key, value)
	})
	if err != nil {
		return err
	}
	return c.l.wait(ctx, p)
}

// Rm removes key, or every entry under path if it ends with '/', from
// dom0's database and waits for the answer. A path that matches nothing in
// the copy gives ErrNotFound without asking dom0, whose daemon would drop
// the link after answering RESP_ERROR_NOENT to an RM from a VM.
func (c *Client) Rm(ctx context.Context, path string) error {
	if err := checkRmPath(path); err != nil {
		return err
	}
	c.db.mu.RLock()
	found := c.db.matchesLocked(path)
	c.db.mu.RUnlock()
	if !found {
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	f, err := encode(CmdRm, path, nil)
	if err != nil {
		return err
	}
	p, err := c.l.start(ctx, f, path, func() error {
		c.db.mu.Lock()
		c.db.rmLocked(path)
		c.db.mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	return c.l.wait(ctx, p)
}

// Watch delivers changes to path (a single key) or, if path ends with '/',
// to every entry below it, starting with the next change.
// Once the connection has ended Watch fails with ErrClosed.
func (c *Client) Watch(path string) (*Watcher, error) {
	if c.l.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ErrClosed, c.l.Err())
	}
	return c.db.watch(path)
}

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.l.done }

// Err returns why the connection ended, or nil while it is up.
func (c *Client) Err() error { return c.l.Err() }

// Close ends the connection and every watch, after sending the answers
// already queued for dom0.
func (c *Client) Close() error {
	c.l.shutdown()
	c.db.closeWatchers()
	return nil
}

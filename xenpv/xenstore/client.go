package xenstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// DefaultSocketPath is where current xenstored listens in dom0 (older
// releases used /var/run/xenstored/socket, usually a symlink to it).
const DefaultSocketPath = "/run/xenstored/socket"

// Client talks to xenstored over one connection. It is safe for
// concurrent use: requests carry distinct req_ids, one goroutine reads
// every reply and watch event and hands each to whoever is waiting for
// it, and writes of whole messages are serialised.
//
// Relative paths are sent as they are and xenstored resolves them against
// the connection's home, /local/domain/<domid> (HomePath); that works on
// a domain's ring and not on dom0's socket, exactly as with the C
// libraries.
type Client struct {
	t  io.ReadWriteCloser
	br *bufio.Reader

	wsem chan struct{} // one message being written at a time

	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]*call
	watches map[string]*Watch // by token
	tokenN  uint64
	err     error         // set once, when the client fails or closes
	done    chan struct{} // closed with err

	readerDone chan struct{}
}

// call is a request waiting for its reply.
type call struct {
	typ       MsgType
	ch        chan Message // capacity 1: the reader never blocks on it
	abandoned bool         // the caller gave up; late handles the reply
	late      func(Message)
}

// NewClient starts a client on t (a RingConn, a net.Conn, ...). The client
// owns t and closes it in Close; closing t must unblock a Read or Write in
// progress, as it does for RingConn and net.Conn.
func NewClient(t io.ReadWriteCloser) *Client {
	c := &Client{
		t:          t,
		br:         bufio.NewReaderSize(t, HeaderSize+PayloadMax),
		wsem:       make(chan struct{}, 1),
		nextID:     1,
		pending:    make(map[uint32]*call),
		watches:    make(map[string]*Watch),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	go c.readLoop()
	return c
}

// Dial connects to xenstored's unix socket at path (DefaultSocketPath if
// empty), as dom0 tools do.
func Dial(ctx context.Context, path string) (*Client, error) {
	if path == "" {
		path = DefaultSocketPath
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// Close shuts the client down: the connection is closed, every waiting
// call returns ErrClosed and every watch's channel is closed. Close waits
// for the reader goroutine to exit.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	<-c.readerDone
	return nil
}

// Err returns why the client stopped (ErrClosed after Close, a protocol or
// transport error otherwise), or nil while it works.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the client stops working; Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// fail stops the client with err (the first error wins) and returns the
// recorded error.
func (c *Client) fail(err error) error {
	c.mu.Lock()
	if c.err != nil {
		err = c.err
		c.mu.Unlock()
		return err
	}
	c.err = err
	close(c.done)
	watches := c.watches
	c.watches = map[string]*Watch{}
	c.pending = map[uint32]*call{}
	c.mu.Unlock()
	c.t.Close()
	for _, w := range watches {
		w.stop()
	}
	return err
}

func (c *Client) readLoop() {
	defer close(c.readerDone)
	for {
		m, err := ReadMessage(c.br)
		if err != nil {
			if !errors.Is(err, ErrProtocol) && c.Err() == nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				err = fmt.Errorf("xenstore: reading from xenstored: %w", err)
			}
			c.fail(err)
			return
		}
		if err := c.dispatch(m); err != nil {
			c.fail(err)
			return
		}
	}
}

// dispatch hands one incoming message to its recipient. Errors are fatal:
// a reply nobody asked for means the stream cannot be trusted.
func (c *Client) dispatch(m Message) error {
	if m.Type == TypeWatchEvent {
		ss, err := splitStrings(m.Payload)
		if err != nil {
			return fmt.Errorf("xenstore: watch event: %w", err)
		}
		if len(ss) < 2 {
			return fmt.Errorf("xenstore: watch event with %d strings, want path and token: %w", len(ss), ErrProtocol)
		}
		if err := ValidatePath(ss[0]); err != nil {
			return fmt.Errorf("xenstore: watch event: %v: %w", err, ErrProtocol)
		}
		c.mu.Lock()
		w := c.watches[ss[1]]
		c.mu.Unlock()
		if w != nil { // else: an event for a watch just removed, harmless
			w.push(Event{Path: ss[0], Token: ss[1]})
		}
		return nil
	}
	c.mu.Lock()
	cl := c.pending[m.ReqID]
	if cl == nil {
		c.mu.Unlock()
		return fmt.Errorf("xenstore: %v reply with req_id %d that no request has: %w", m.Type, m.ReqID, ErrProtocol)
	}
	if m.Type != cl.typ && m.Type != TypeError {
		c.mu.Unlock()
		return fmt.Errorf("xenstore: %v reply to %v request %d: %w", m.Type, cl.typ, m.ReqID, ErrProtocol)
	}
	delete(c.pending, m.ReqID)
	late := cl.abandoned && cl.late != nil
	c.mu.Unlock()
	if late {
		go cl.late(m)
		return nil
	}
	cl.ch <- m
	return nil
}

// request sends one message and waits for its reply, returning the reply
// payload or the error xenstored sent. If ctx ends first the request may
// still take effect; its reply is then discarded (or handed to late).
func (c *Client) request(ctx context.Context, typ MsgType, txID uint32, payload []byte, late func(Message)) ([]byte, error) {
	if len(payload) > PayloadMax {
		return nil, errLocal("E2BIG", "%v payload of %d bytes exceeds %d", typ, len(payload), PayloadMax)
	}
	cl := &call{typ: typ, ch: make(chan Message, 1)}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	id := c.nextID
	for id == 0 || c.pending[id] != nil {
		id++
	}
	c.nextID = id + 1
	c.pending[id] = cl
	c.mu.Unlock()

	msg, err := MarshalMessage(typ, id, txID, payload)
	if err != nil { // unreachable: length checked above
		c.forget(id)
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		c.forget(id)
		return nil, notSent{err}
	}
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		c.forget(id)
		return nil, notSent{ctx.Err()}
	case <-c.done:
		return nil, c.Err()
	}
	// A message is written whole or the connection is dead: a partial
	// message would desynchronise the stream, so no deadline applies
	// here (Close unblocks the write).
	_, err = c.t.Write(msg)
	<-c.wsem
	if err != nil {
		return nil, c.fail(fmt.Errorf("xenstore: writing to xenstored: %w", err))
	}

	select {
	case m := <-cl.ch:
		if m.Type == TypeError {
			return nil, parseError(m.Payload)
		}
		return m.Payload, nil
	case <-ctx.Done():
		c.mu.Lock()
		if c.pending[id] == cl {
			cl.abandoned = true
			cl.late = late
			late = nil
		}
		c.mu.Unlock()
		if late != nil { // the reply raced in: it is in cl.ch
			select {
			case m := <-cl.ch:
				go late(m)
			default:
			}
		}
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.Err()
	}
}

// notSent wraps the context error of a request that was given up before
// any of it was written, so callers that must know (ending a
// transaction) can tell it from one that may have taken effect.
type notSent struct{ err error }

func (e notSent) Error() string { return e.err.Error() }
func (e notSent) Unwrap() error { return e.err }

func (c *Client) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// ack checks the "OK" reply of requests that return nothing else.
func ack(p []byte, err error) error {
	if err != nil {
		return err
	}
	s, err := singleString(p)
	if err != nil {
		return err
	}
	if s != "OK" {
		return fmt.Errorf("xenstore: expected OK, got %q: %w", truncate(s), ErrProtocol)
	}
	return nil
}

// root is the client's view outside any transaction.
func (c *Client) root() *Tx { return &Tx{c: c} }

// Read returns the value at path. Values are octet strings; most are
// short ASCII text.
func (c *Client) Read(ctx context.Context, path string) (string, error) {
	return c.root().Read(ctx, path)
}

// Exists reports whether path exists.
func (c *Client) Exists(ctx context.Context, path string) (bool, error) {
	return c.root().Exists(ctx, path)
}

// Write stores value at path, creating missing parents with empty values.
func (c *Client) Write(ctx context.Context, path, value string) error {
	return c.root().Write(ctx, path, value)
}

// Mkdir makes sure path exists, creating it and its parents empty.
func (c *Client) Mkdir(ctx context.Context, path string) error {
	return c.root().Mkdir(ctx, path)
}

// Rm removes path and everything below it. A missing path is not an error
// as long as its parent exists.
func (c *Client) Rm(ctx context.Context, path string) error {
	return c.root().Rm(ctx, path)
}

// Directory returns the names of path's children (leaf names, not full
// paths), in xenstored's order.
func (c *Client) Directory(ctx context.Context, path string) ([]string, error) {
	return c.root().Directory(ctx, path)
}

// GetPerms returns path's permissions; the first entry is the owner's.
func (c *Client) GetPerms(ctx context.Context, path string) ([]Perm, error) {
	return c.root().GetPerms(ctx, path)
}

// SetPerms replaces path's permissions; perms[0] names the owner and the
// access of unlisted domains.
func (c *Client) SetPerms(ctx context.Context, path string, perms []Perm) error {
	return c.root().SetPerms(ctx, path, perms)
}

// GetDomainPath asks xenstored for dom's home directory (normally
// HomePath(dom)). The answer is checked to be a valid absolute path.
func (c *Client) GetDomainPath(ctx context.Context, dom DomID) (string, error) {
	p, err := c.request(ctx, TypeGetDomainPath, 0, joinStrings(strconv.FormatUint(uint64(dom), 10)), nil)
	if err != nil {
		return "", err
	}
	s, err := singleString(p)
	if err != nil {
		return "", err
	}
	if err := ValidatePath(s); err != nil || s[0] != '/' {
		return "", fmt.Errorf("xenstore: domain path %q is not a valid absolute path: %w", truncate(s), ErrProtocol)
	}
	return s, nil
}

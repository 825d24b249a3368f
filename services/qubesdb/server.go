package qubesdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// Server is the dom0 side of QubesDB for one VM: it holds the database,
// answers the VM's requests and pushes its own changes to the VM once the
// VM has synchronized. It follows qubes-core-qubesdb's daemon on the vchan
// link: only WRITE, RM, one MULTIREAD and responses are accepted, a failed
// RM from the VM or a second MULTIREAD ends the connection.
type Server struct {
	db *store

	mu   sync.Mutex
	conn *serverConn
}

type serverConn struct {
	l *link
	// synced is set once the VM has its dump; from then on changes are
	// pushed. Guarded by the store's mu so pushes follow the dump.
	synced bool
}

// NewServer returns a server with an empty database.
func NewServer(opts Options) *Server {
	return &Server{db: newStore(opts.MaxBytes)}
}

func (s *Server) current() *serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Serve talks to one VM over rwc until the VM disconnects (nil), ctx ends
// or the VM misbehaves (an error). Serve closes rwc. One VM at a time.
func (s *Server) Serve(ctx context.Context, rwc io.ReadWriteCloser) error {
	cn := &serverConn{l: newLink(rwc)}
	s.mu.Lock()
	if s.conn != nil {
		s.mu.Unlock()
		cn.l.fail(errors.New("qubesdb: server already has a VM connected"))
		return cn.l.Err()
	}
	s.conn = cn
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { cn.l.fail(ctx.Err()) })
	defer stop()

	buf := make([]byte, MaxData)
	for {
		m, err := readMessage(rwc, buf)
		if err == io.EOF && cn.l.Err() == nil {
			cn.l.fail(ErrClosed)
			return nil
		}
		if err == nil {
			err = s.handle(ctx, cn, m)
		}
		if err != nil {
			cn.l.fail(err)
			return cn.l.Err()
		}
	}
}

func (s *Server) answer(cn *serverConn, t MsgType, path string) error {
	f, err := encode(t, path, nil)
	if err != nil {
		return err
	}
	return cn.l.sendNoWait(f)
}

func (s *Server) handle(ctx context.Context, cn *serverConn, m message) error {
	switch m.Type {
	case CmdMultiread:
		if m.DataLen != 0 {
			return fmt.Errorf("qubesdb: VM MULTIREAD carries %d data bytes", m.DataLen)
		}
		return s.dump(ctx, cn, m.Path)
	case CmdWrite:
		if err := CheckKey(m.Path); err != nil {
			return err
		}
		if err := CheckValue(m.Data); err != nil {
			return fmt.Errorf("qubesdb: VM write of %q: %w", m.Path, err)
		}
		s.db.mu.Lock()
		err := s.db.writeLocked(m.Path, string(m.Data))
		s.db.mu.Unlock()
		if err != nil {
			s.answer(cn, RespError, m.Path)
			return err
		}
		return s.answer(cn, RespOK, m.Path)
	case CmdRm:
		if m.DataLen != 0 {
			return fmt.Errorf("qubesdb: VM RM %q carries %d data bytes", m.Path, m.DataLen)
		}
		if err := checkRmPath(m.Path); err != nil {
			return err
		}
		s.db.mu.Lock()
		n := s.db.rmLocked(m.Path)
		s.db.mu.Unlock()
		if n == 0 {
			// As dom0's daemon: a failed RM from the VM means the two
			// databases disagree, which ends the link.
			s.answer(cn, RespErrorNoEnt, m.Path)
			return fmt.Errorf("qubesdb: VM removed %q, which does not exist: databases out of sync", m.Path)
		}
		return s.answer(cn, RespOK, m.Path)
	case RespOK, RespError, RespErrorNoEnt:
		return cn.l.complete(m.Header, len(m.Data))
	default:
		return fmt.Errorf("qubesdb: %s %q is not valid from a VM", m.Type, m.Path)
	}
}

// dump answers the VM's MULTIREAD: matching entries (all of them, in
// reverse order as dom0 does, for an empty path), then the end marker.
func (s *Server) dump(ctx context.Context, cn *serverConn, prefix string) error {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	if cn.synced {
		s.answer(cn, RespError, prefix)
		return errors.New("qubesdb: VM sent a second MULTIREAD; only one is allowed per connection")
	}
	keys := s.db.keysLocked(prefix)
	if prefix == "" {
		sort.Sort(sort.Reverse(sort.StringSlice(keys)))
	}
	for _, k := range keys {
		f, err := encode(RespMultiread, k, []byte(s.db.m[k]))
		if err != nil {
			return err
		}
		if err := cn.l.send(ctx, f); err != nil {
			return err
		}
	}
	f, err := encode(RespMultiread, "", nil)
	if err != nil {
		return err
	}
	if err := cn.l.send(ctx, f); err != nil {
		return err
	}
	cn.synced = true
	return nil
}

// push sends a change to a synchronized VM. Caller holds s.db.mu, so
// pushes leave in the order the database changed.
func (s *Server) push(ctx context.Context, t MsgType, path string, data []byte) (*serverConn, *pendingReq, error) {
	cn := s.current()
	if cn == nil || !cn.synced {
		return nil, nil, nil
	}
	f, err := encode(t, path, data)
	if err != nil {
		return nil, nil, err
	}
	p, err := cn.l.start(ctx, f, path, nil)
	return cn, p, err
}

// Write stores key=value. If a synchronized VM is connected the change is
// pushed and Write waits for the VM's answer. An error from the push
// leaves the change in the database: a VM that reconnects gets it in its
// initial dump.
func (s *Server) Write(ctx context.Context, key, value string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := CheckValue([]byte(value)); err != nil {
		return fmt.Errorf("qubesdb: write %q: %w", key, err)
	}
	s.db.mu.Lock()
	if err := s.db.writeLocked(key, value); err != nil {
		s.db.mu.Unlock()
		return err
	}
	cn, p, err := s.push(ctx, CmdWrite, key, []byte(value))
	s.db.mu.Unlock()
	if err != nil || p == nil {
		return err
	}
	return cn.l.wait(ctx, p)
}

// Rm removes key, or every entry under path if it ends with '/'. If a
// synchronized VM is connected the removal is pushed and Rm waits for the
// VM's answer.
func (s *Server) Rm(ctx context.Context, path string) error {
	if err := checkRmPath(path); err != nil {
		return err
	}
	s.db.mu.Lock()
	if s.db.rmLocked(path) == 0 {
		s.db.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	cn, p, err := s.push(ctx, CmdRm, path, nil)
	s.db.mu.Unlock()
	if err != nil || p == nil {
		return err
	}
	return cn.l.wait(ctx, p)
}

// Read returns the value of key.
func (s *Server) Read(key string) (string, bool) { return s.db.read(key) }

// List returns the keys starting with prefix, sorted.
func (s *Server) List(prefix string) []string { return s.db.list(prefix) }

// Multiread returns the entries whose keys start with prefix, sorted.
func (s *Server) Multiread(prefix string) []Entry { return s.db.multiread(prefix) }

// Watch delivers changes made by either side to path, or below it if it
// ends with '/'.
func (s *Server) Watch(path string) (*Watcher, error) { return s.db.watch(path) }

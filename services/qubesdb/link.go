package qubesdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Errors a request can end with.
var (
	// ErrNotFound: the path names no entry (RESP_ERROR_NOENT, or found
	// locally before bothering the peer).
	ErrNotFound = errors.New("qubesdb: no such entry")
	// ErrRejected: the peer answered RESP_ERROR.
	ErrRejected = errors.New("qubesdb: request rejected by peer")
	// ErrClosed: the connection is closed.
	ErrClosed = errors.New("qubesdb: connection closed")
)

// sendQueueLen bounds the frames waiting for the transport. Answers to the
// peer's pushes are queued without blocking the reader, so a peer that
// pushes without ever reading our answers fills this queue and is cut off
// instead of making us buffer without limit.
const sendQueueLen = 256

// message is one header with its data, as read from the peer.
type message struct {
	Header
	Data []byte
}

// readMessage reads one message and validates its header. buf must have
// room for MaxData bytes; the returned data aliases it.
func readMessage(r io.Reader, buf []byte) (message, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return message{}, fmt.Errorf("qubesdb: stream ended inside a header: %w", err)
		}
		return message{}, err
	}
	var m message
	if err := m.Header.UnmarshalBinary(hb[:]); err != nil {
		return message{}, err
	}
	m.Data = buf[:m.DataLen]
	if _, err := io.ReadFull(r, m.Data); err != nil {
		return message{}, fmt.Errorf("qubesdb: stream ended inside the %d data bytes of %s %q: %w", m.DataLen, m.Type, m.Path, eofToUnexpected(err))
	}
	return m, nil
}

func eofToUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// encode builds the frame for a message this side sends.
func encode(t MsgType, path string, data []byte) ([]byte, error) {
	b := make([]byte, HeaderSize+len(data))
	if len(data) >= MaxData {
		return nil, fmt.Errorf("qubesdb: value for %q is %d bytes, limit is %d", path, len(data), MaxData-1)
	}
	if err := (Header{Type: t, Path: path, DataLen: uint32(len(data))}).put(b); err != nil {
		return nil, err
	}
	copy(b[HeaderSize:], data)
	return b, nil
}

// pendingReq is a WRITE or RM this side sent and whose answer is due.
// Both daemons answer in order and echo the path, which is checked.
type pendingReq struct {
	path string
	// onOK runs in the reader goroutine when RESP_OK arrives, before any
	// later message is handled, so local state follows the peer's order.
	// An error from it ends the link: the two databases disagree.
	onOK func() error
	res  chan error // buffered 1
}

// link is the part both ends share: an ordered sender goroutine, the FIFO
// of requests awaiting answers, and failure handling.
type link struct {
	rwc io.ReadWriteCloser
	out chan []byte

	sendMu sync.Mutex // orders pending registration with the send queue

	mu      sync.Mutex
	pending []*pendingReq

	done     chan struct{}
	failOnce sync.Once
	err      error // set before done is closed
}

func newLink(rwc io.ReadWriteCloser) *link {
	l := &link{rwc: rwc, out: make(chan []byte, sendQueueLen), done: make(chan struct{})}
	go l.sender()
	return l
}

func (l *link) sender() {
	for {
		select {
		case f := <-l.out:
			if f == nil { // shutdown's marker: everything before it is sent
				l.fail(ErrClosed)
				return
			}
			if _, err := l.rwc.Write(f); err != nil {
				l.fail(fmt.Errorf("qubesdb: write to peer: %w", err))
				return
			}
		case <-l.done:
			return
		}
	}
}

// shutdownTimeout bounds how long shutdown waits for queued frames to go
// out to a peer that may have stopped reading.
const shutdownTimeout = time.Second

// shutdown ends the link with ErrClosed once the frames queued so far are
// written, or after shutdownTimeout.
func (l *link) shutdown() {
	select {
	case l.out <- nil:
	default: // the queue is full: the peer is not reading
		l.fail(ErrClosed)
	}
	select {
	case <-l.done:
	case <-time.After(shutdownTimeout):
		l.fail(ErrClosed)
	}
}

// fail ends the link with err (the first error wins), closes the transport
// and wakes every waiter.
func (l *link) fail(err error) {
	l.failOnce.Do(func() {
		l.err = err
		close(l.done)
		l.rwc.Close()
		l.mu.Lock()
		for _, p := range l.pending {
			p.res <- err
		}
		l.pending = nil
		l.mu.Unlock()
	})
}

// Err returns why the link ended, or nil while it is up.
func (l *link) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

// sendNoWait queues an answer from the reader goroutine; it never blocks.
func (l *link) sendNoWait(f []byte) error {
	select {
	case l.out <- f:
		return nil
	case <-l.done:
		return l.err
	default:
		err := fmt.Errorf("qubesdb: peer is not reading our answers (%d queued); closing", sendQueueLen)
		l.fail(err)
		return err
	}
}

// send queues a frame that needs no answer, waiting for room.
func (l *link) send(ctx context.Context, f []byte) error {
	select {
	case l.out <- f:
		return nil
	case <-l.done:
		return l.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start registers a request and queues its frame. Callers that need the
// request ordered with other state changes call it under their own lock.
func (l *link) start(ctx context.Context, f []byte, path string, onOK func() error) (*pendingReq, error) {
	p := &pendingReq{path: path, onOK: onOK, res: make(chan error, 1)}
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	l.mu.Lock()
	if err := l.Err(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	l.pending = append(l.pending, p)
	l.mu.Unlock()
	select {
	case l.out <- f:
		return p, nil
	case <-l.done:
		return nil, l.err
	case <-ctx.Done():
		// Never sent, so no answer will come: take it off the FIFO.
		l.mu.Lock()
		for i, q := range l.pending {
			if q == p {
				l.pending = append(l.pending[:i], l.pending[i+1:]...)
				break
			}
		}
		l.mu.Unlock()
		return nil, ctx.Err()
	}
}

// wait blocks until the answer to p arrives. If ctx ends first the answer
// is still consumed (and its onOK run) when it comes.
func (l *link) wait(ctx context.Context, p *pendingReq) error {
	select {
	case err := <-p.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// complete hands a response to the oldest pending request. A response
// nobody asked for, or for another path, is a protocol error.
func (l *link) complete(h Header, dataLen int) error {
	if dataLen != 0 {
		return fmt.Errorf("qubesdb: %s %q carries %d data bytes, want none", h.Type, h.Path, dataLen)
	}
	l.mu.Lock()
	if len(l.pending) == 0 {
		l.mu.Unlock()
		return fmt.Errorf("qubesdb: unsolicited %s %q from peer", h.Type, h.Path)
	}
	p := l.pending[0]
	if p.path != h.Path {
		l.mu.Unlock()
		return fmt.Errorf("qubesdb: %s for %q while waiting for the answer about %q", h.Type, h.Path, p.path)
	}
	l.pending = l.pending[1:]
	l.mu.Unlock()
	var res error
	switch h.Type {
	case RespOK:
		if p.onOK != nil {
			if err := p.onOK(); err != nil {
				p.res <- err
				return err
			}
		}
	case RespErrorNoEnt:
		res = fmt.Errorf("%w: %s", ErrNotFound, h.Path)
	default:
		res = fmt.Errorf("%w: %s", ErrRejected, h.Path)
	}
	p.res <- res
	return nil
}

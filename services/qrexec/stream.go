package qrexec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// conn frames messages on one connection. Writes from several goroutines
// are serialized; reads happen in one goroutine at a time.
type conn struct {
	rwc  io.ReadWriteCloser
	wmu  sync.Mutex
	wbuf []byte // reused under wmu; grows to one chunk plus header
}

// send writes one message (header and payload parts) with a single Write,
// so a message never straddles two transport writes.
func (c *conn) send(t MsgType, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := append(c.wbuf[:0], make([]byte, HeaderSize)...)
	Header{Type: t, Len: uint32(n)}.put(b)
	for _, p := range parts {
		b = append(b, p...)
	}
	c.wbuf = b
	if _, err := c.rwc.Write(b); err != nil {
		return fmt.Errorf("qrexec: send %s: %w", t, err)
	}
	return nil
}

// readHeader reads one header. A clean end of stream before it is io.EOF.
func (c *conn) readHeader() (Header, error) {
	var b [HeaderSize]byte
	if _, err := io.ReadFull(c.rwc, b[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, fmt.Errorf("qrexec: stream ended inside a header: %w", err)
		}
		return Header{}, err
	}
	var h Header
	h.UnmarshalBinary(b[:])
	return h, nil
}

// readPayload reads the n bytes that follow a header whose length the
// caller has already bounded.
func (c *conn) readPayload(h Header) ([]byte, error) {
	b := make([]byte, h.Len)
	if _, err := io.ReadFull(c.rwc, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("qrexec: stream ended inside %s (%d bytes): %w", h.Type, h.Len, err)
	}
	return b, nil
}

// handshake exchanges HELLO: both ends send theirs first, so ours goes out
// concurrently with reading the peer's, which keeps unbuffered transports
// from deadlocking. It returns the negotiated version.
func handshake(c *conn) (uint32, error) {
	sent := make(chan error, 1)
	go func() { sent <- c.send(MsgHello, encodePeerInfo(Version)) }()
	h, err := c.readHeader()
	if err == nil && (h.Type != MsgHello || h.Len != PeerInfoSize) {
		err = fmt.Errorf("qrexec: want HELLO with %d bytes first, got %s with %d", PeerInfoSize, h.Type, h.Len)
	}
	var b []byte
	if err == nil {
		b, err = c.readPayload(h)
	}
	var v uint32
	if err == nil {
		_, v, err = DecodePeerInfo(b)
	}
	if err != nil {
		c.rwc.Close() // unblocks our HELLO if the peer is not reading
		<-sent
		if err == io.EOF {
			err = fmt.Errorf("qrexec: peer closed before HELLO: %w", io.ErrUnexpectedEOF)
		}
		return 0, err
	}
	if err := <-sent; err != nil {
		return 0, err
	}
	return v, nil
}

// stdinReader delivers the STDIN messages of a data connection as a byte
// stream; a zero-length STDIN is end of file. Any other message, or a
// chunk over the version's limit, is an error.
type stdinReader struct {
	c        *conn
	maxChunk int
	left     uint32 // payload bytes of the current chunk not yet read
	err      error  // sticky: io.EOF after the EOF message
}

func (r *stdinReader) Read(p []byte) (int, error) {
	for r.left == 0 {
		if r.err != nil {
			return 0, r.err
		}
		h, err := r.c.readHeader()
		switch {
		case err == io.EOF:
			r.err = fmt.Errorf("qrexec: data connection closed without stdin EOF: %w", io.ErrUnexpectedEOF)
		case err != nil:
			r.err = err
		case h.Type != MsgDataStdin:
			r.err = fmt.Errorf("qrexec: got %s on a service's data connection, want DATA_STDIN", h.Type)
		case h.Len > uint32(r.maxChunk):
			r.err = fmt.Errorf("qrexec: stdin chunk of %d bytes, limit is %d", h.Len, r.maxChunk)
		case h.Len == 0:
			r.err = io.EOF
		default:
			r.left = h.Len
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := min(uint32(len(p)), r.left)
	m, err := io.ReadFull(r.c.rwc, p[:n])
	r.left -= uint32(m)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.err = fmt.Errorf("qrexec: stream ended inside a stdin chunk: %w", err)
		r.left = 0
		return m, r.err
	}
	return m, nil
}

// chunkWriter sends what is written as data messages of one type, cut to
// the version's chunk limit. close sends the zero-length EOF message once.
type chunkWriter struct {
	c        *conn
	t        MsgType
	maxChunk int
	mu       sync.Mutex
	closed   bool
}

var errWriteAfterClose = errors.New("qrexec: write after the handler returned")

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errWriteAfterClose
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), w.maxChunk)
		if err := w.c.send(w.t, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

func (w *chunkWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.c.send(w.t)
}

func encodeExitCode(code int) []byte {
	return binary.LittleEndian.AppendUint32(nil, uint32(int32(code)))
}

// runClientSide is the caller's end of a data connection (a service this
// VM called): stdin goes out as STDIN chunks then EOF, STDOUT and STDERR
// come back until DATA_EXIT_CODE, whose value is returned. The stdin copy
// runs in its own goroutine and stops when the connection closes.
func runClientSide(c *conn, version uint32, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	maxChunk := MaxChunk(version)
	go func() {
		w := &chunkWriter{c: c, t: MsgDataStdin, maxChunk: maxChunk}
		if stdin != nil {
			if _, err := io.CopyBuffer(w, stdin, make([]byte, maxChunk)); err != nil {
				return
			}
		}
		w.close()
	}()
	outs := map[MsgType]io.Writer{MsgDataStdout: stdout, MsgDataStderr: stderr}
	ended := map[MsgType]bool{}
	buf := make([]byte, maxChunk)
	for {
		h, err := c.readHeader()
		if err == io.EOF {
			return 0, fmt.Errorf("qrexec: service closed the data connection without an exit code: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return 0, err
		}
		switch h.Type {
		case MsgDataExitCode:
			if h.Len != ExitCodeSize {
				return 0, fmt.Errorf("qrexec: exit code message has %d bytes, want %d", h.Len, ExitCodeSize)
			}
			b, err := c.readPayload(h)
			if err != nil {
				return 0, err
			}
			return int(int32(binary.LittleEndian.Uint32(b))), nil
		case MsgDataStdout, MsgDataStderr:
			if h.Len > uint32(maxChunk) {
				return 0, fmt.Errorf("qrexec: %s chunk of %d bytes, limit is %d", h.Type, h.Len, maxChunk)
			}
			if ended[h.Type] && h.Len > 0 {
				return 0, fmt.Errorf("qrexec: %s data after its EOF", h.Type)
			}
			if h.Len == 0 {
				ended[h.Type] = true
				continue
			}
			if _, err := io.ReadFull(c.rwc, buf[:h.Len]); err != nil {
				return 0, fmt.Errorf("qrexec: stream ended inside %s: %w", h.Type, err)
			}
			if w := outs[h.Type]; w != nil {
				if _, err := w.Write(buf[:h.Len]); err != nil {
					// The caller stopped listening; keep draining so the
					// service can finish and report its exit code.
					outs[h.Type] = nil
				}
			}
		default:
			return 0, fmt.Errorf("qrexec: got %s from a service, want stdout, stderr or exit code", h.Type)
		}
	}
}

// serveData is the service's end of a data connection: it runs h (nil
// means there is nothing to run and code says why), then sends EOF on
// stdout and stderr and the exit code, as the Linux agent does.
func serveData(ctx context.Context, dc *conn, h Handler, req *Request, code int, logf func(string, ...any)) error {
	maxChunk := MaxChunk(req.Version)
	stdout := &chunkWriter{c: dc, t: MsgDataStdout, maxChunk: maxChunk}
	stderr := &chunkWriter{c: dc, t: MsgDataStderr, maxChunk: maxChunk}
	if h != nil {
		stdin := &stdinReader{c: dc, maxChunk: maxChunk}
		code = runHandler(ctx, h, req, stdin, stdout, stderr, logf)
	}
	if err := stdout.close(); err != nil {
		return err
	}
	if err := stderr.close(); err != nil {
		return err
	}
	return dc.send(MsgDataExitCode, encodeExitCode(code))
}

// runHandler calls h, turning a panic into ExitProblem so one broken
// service does not take the whole agent down.
func runHandler(ctx context.Context, h Handler, req *Request, stdin io.Reader, stdout, stderr io.Writer, logf func(string, ...any)) (code int) {
	defer func() {
		if p := recover(); p != nil {
			logf("qrexec: service %s panicked: %v", req.Service, p)
			code = ExitProblem
		}
	}()
	return h(ctx, req, stdin, stdout, stderr)
}

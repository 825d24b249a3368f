package qrexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Handler runs one service call. stdin ends at the caller's EOF; what is
// written to stdout and stderr goes to the caller, and the returned exit
// code ends the call. ctx is cancelled when the agent stops. Writes after
// the handler returned fail.
type Handler func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) (exitCode int)

// Request describes the call a handler serves.
type Request struct {
	Type    MsgType // MsgExecCmdline, or MsgJustExec (no stdio, caller does not wait)
	Domain  uint32  // where the data connection goes
	Port    uint32
	Version uint32 // protocol version negotiated on the data connection
	Command        // the parsed "user:QUBESRPC service+arg source" command line
}

// Dialer opens data connections. In Qubes they are vchans: for requests
// dom0 sends (EXEC_CMDLINE, JUST_EXEC) the agent is the vchan client of
// domain:port; for calls this VM made (SERVICE_CONNECT) it is the server.
// Both return once the connection is up.
type Dialer interface {
	Dial(ctx context.Context, domain, port uint32) (io.ReadWriteCloser, error)
	Listen(ctx context.Context, domain, port uint32) (io.ReadWriteCloser, error)
}

// dataHandshakeTimeout bounds the wait for the peer's HELLO on a data
// connection, like the Linux agent's 120 s connection timeout: a peer that
// connects and stays silent must not hold a request slot for ever. A
// variable only so tests can shorten it.
var dataHandshakeTimeout = 120 * time.Second

// dataHandshake is handshake with dataHandshakeTimeout.
func dataHandshake(c *conn) (uint32, error) {
	t := time.AfterFunc(dataHandshakeTimeout, func() { c.rwc.Close() })
	v, err := handshake(c)
	if !t.Stop() {
		return 0, fmt.Errorf("qrexec: no HELLO on the data connection within %v", dataHandshakeTimeout)
	}
	return v, err
}

// DefaultMaxConcurrent bounds the requests served at once (MAX_FDS is 256
// in the Linux agent, whose requests are processes, not goroutines).
const DefaultMaxConcurrent = 64

// maxWaiting bounds the requests read from dom0 that wait for a free slot.
// Waiting requests keep the control connection moving, so answers to this
// VM's own Calls still arrive while handlers (which may be making those
// Calls) hold every slot. Past this bound the agent stops reading from
// dom0. Each waiting request holds at most one command line (64 KiB).
const maxWaiting = 64

var (
	// ErrRefused: dom0 refused a Call (policy, unknown target, ...).
	ErrRefused = errors.New("qrexec: service call refused")
	// ErrNotConnected: Call found no control connection to dom0.
	ErrNotConnected = errors.New("qrexec: agent is not connected to dom0")
)

// Agent is the VM's qrexec agent. Register services with Handle, then run
// Serve on the control connection.
type Agent struct {
	dialer Dialer

	// CommandHandler, if set, runs commands that are not QUBESRPC calls
	// (dom0's "user:shell command" form). Without it they end with exit
	// code 127, as a missing program would. Set before Serve.
	CommandHandler Handler
	// MaxConcurrent bounds requests in flight; 0 means DefaultMaxConcurrent.
	MaxConcurrent int
	// Logf, if set, reports events that are not errors of Serve: requests
	// that failed, idents nobody waits for. Set before Serve.
	Logf func(format string, args ...any)

	mu       sync.Mutex
	services map[string]Handler
	serving  bool          // a Serve is running (handshake included)
	sess     *session      // set once the handshake is done
	ready    chan struct{} // closed while sess is set
}

// NewAgent returns an agent that opens data connections with d.
func NewAgent(d Dialer) *Agent {
	return &Agent{dialer: d, services: make(map[string]Handler), ready: make(chan struct{})}
}

// Handle registers h for a service name ("qubes.Foo") or for one argument
// of it ("qubes.Foo+arg"), which takes precedence, as service files do in
// the Linux agent.
func (a *Agent) Handle(service string, h Handler) error {
	if err := CheckServiceName(service); err != nil {
		return err
	}
	if strings.HasSuffix(service, "+") {
		return fmt.Errorf("qrexec: register %q without the trailing '+'", service)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.services[service] = h
	return nil
}

func (a *Agent) logf(format string, args ...any) {
	if a.Logf != nil {
		a.Logf(format, args...)
	}
}

// session is one control connection.
type session struct {
	c       *conn
	version uint32
	done    chan struct{}

	mu      sync.Mutex
	pending map[string]chan callResult
	nextID  uint64
}

type callResult struct {
	refused      bool
	domain, port uint32
}

func (s *session) sendTerminated(domain, port uint32) {
	// exec_params without a command line, as the Linux agent sends it.
	s.c.send(MsgConnectionTerminated, ExecParams{Domain: domain, Port: port}.target())
}

// Serve runs the agent on the control connection: it sends HELLO, reads
// dom0's, then serves requests until dom0 closes the connection (nil),
// ctx ends, or dom0 sends something invalid (an error naming it). Serve
// closes ctrl and waits for the requests it started.
func (a *Agent) Serve(ctx context.Context, ctrl io.ReadWriteCloser) error {
	ctx, cancel, done, err := serveControl(ctx, ctrl, &a.mu, &a.serving, "agent is already serving a control connection")
	if err != nil {
		return err
	}
	defer done()

	c := &conn{rwc: ctrl}
	v, err := handshake(c)
	if err != nil {
		return fmt.Errorf("qrexec: control connection: %w", err)
	}
	s := &session{c: c, version: v, done: make(chan struct{}), pending: make(map[string]chan callResult)}
	a.mu.Lock()
	a.sess = s
	close(a.ready)
	a.mu.Unlock()

	var wg sync.WaitGroup
	defer func() {
		cancel()
		a.mu.Lock()
		a.sess = nil
		a.ready = make(chan struct{})
		a.mu.Unlock()
		close(s.done)
		wg.Wait()
	}()
	max := a.MaxConcurrent
	if max <= 0 {
		max = DefaultMaxConcurrent
	}
	running := make(chan struct{}, max)
	admitted := make(chan struct{}, max+maxWaiting)
	for {
		req, err := a.readControl(s)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if req == nil {
			continue
		}
		select {
		case admitted <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-admitted }()
			select {
			case running <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-running }()
			a.serveRequest(ctx, s, req)
		}()
	}
}

// execRequest is an EXEC_CMDLINE or JUST_EXEC read from dom0.
type execRequest struct {
	typ    MsgType
	params ExecParams
	cmd    Command
	cmdErr error // the command line could not be parsed: exit code 125
}

// readControl reads one message from dom0. It returns a request to run,
// nil for a message handled in place, or an error that ends the session.
func (a *Agent) readControl(s *session) (*execRequest, error) {
	h, err := s.c.readHeader()
	if err != nil {
		return nil, err
	}
	switch h.Type {
	case MsgExecCmdline, MsgJustExec:
		if h.Len <= ExecParamsSize || h.Len > ExecParamsSize+MaxCmdlineLen+1 {
			return nil, fmt.Errorf("qrexec: %s with %d bytes of exec_params, want %d to %d", h.Type, h.Len, ExecParamsSize+1, ExecParamsSize+MaxCmdlineLen+1)
		}
		b, err := s.c.readPayload(h)
		if err != nil {
			return nil, err
		}
		r := &execRequest{typ: h.Type}
		if err := r.params.UnmarshalBinary(b); err != nil {
			// The stream is still in step and the data connection is
			// known: report the bad command there, as the Linux agent does.
			r.params.Domain, r.params.Port = decodeTarget(b)
			r.cmdErr = err
			return r, nil
		}
		r.cmd, r.cmdErr = ParseCommand(r.params.Cmdline)
		return r, nil
	case MsgServiceConnect:
		if h.Len != ExecParamsSize+ServiceParamsSize {
			return nil, fmt.Errorf("qrexec: SERVICE_CONNECT with %d bytes, want %d", h.Len, ExecParamsSize+ServiceParamsSize)
		}
		b, err := s.c.readPayload(h)
		if err != nil {
			return nil, err
		}
		ident, err := DecodeServiceParams(b[ExecParamsSize:])
		if err != nil {
			return nil, fmt.Errorf("qrexec: SERVICE_CONNECT: %w", err)
		}
		domain, port := decodeTarget(b)
		s.resolve(a, ident, callResult{domain: domain, port: port})
		return nil, nil
	case MsgServiceRefused:
		if h.Len != ServiceParamsSize {
			return nil, fmt.Errorf("qrexec: SERVICE_REFUSED with %d bytes, want %d", h.Len, ServiceParamsSize)
		}
		b, err := s.c.readPayload(h)
		if err != nil {
			return nil, err
		}
		ident, err := DecodeServiceParams(b)
		if err != nil {
			return nil, fmt.Errorf("qrexec: SERVICE_REFUSED: %w", err)
		}
		s.resolve(a, ident, callResult{refused: true})
		return nil, nil
	default:
		return nil, fmt.Errorf("qrexec: unexpected %s (%d bytes) from dom0 on the control connection", h.Type, h.Len)
	}
}

func (s *session) resolve(a *Agent, ident string, r callResult) {
	s.mu.Lock()
	ch, ok := s.pending[ident]
	delete(s.pending, ident)
	s.mu.Unlock()
	if !ok {
		// The Linux agent ignores idents it does not know, too.
		a.logf("qrexec: dom0 answered request %q, which nobody waits for", ident)
		return
	}
	ch <- r
}

// lookup finds the handler for a request and the exit code to report if
// there is none.
func (a *Agent) lookup(r *execRequest) (Handler, int) {
	switch {
	case r.cmdErr != nil:
		return nil, ExitProblem
	case !r.cmd.IsRPC:
		if a.CommandHandler != nil {
			return a.CommandHandler, 0
		}
		return nil, ExitServiceNotFound
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.cmd.Arg != "" {
		if h, ok := a.services[r.cmd.Service+"+"+r.cmd.Arg]; ok {
			return h, 0
		}
	}
	if h, ok := a.services[r.cmd.Service]; ok {
		return h, 0
	}
	return nil, ExitServiceNotFound
}

// serveRequest runs one EXEC_CMDLINE or JUST_EXEC: connect the data
// connection, exchange HELLO, run the handler (or report why not) and tell
// dom0 the port is free again.
func (a *Agent) serveRequest(ctx context.Context, s *session, r *execRequest) {
	domain, port := r.params.Domain, r.params.Port
	terminated := false
	terminate := func() {
		if !terminated {
			terminated = true
			s.sendTerminated(domain, port)
		}
	}
	defer terminate()
	if r.cmdErr != nil {
		a.logf("qrexec: %s for %d:%d: %v", r.typ, domain, port, r.cmdErr)
	}
	rwc, err := a.dialer.Dial(ctx, domain, port)
	if err != nil {
		a.logf("qrexec: %s: data connection to %d:%d: %v", r.typ, domain, port, err)
		return
	}
	defer rwc.Close()
	// Serve waits for its requests: leaving makes blocked handlers fail.
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer stop()
	dc := &conn{rwc: rwc}
	v, err := dataHandshake(dc)
	if err != nil {
		a.logf("qrexec: %s: data connection to %d:%d: %v", r.typ, domain, port, err)
		return
	}
	h, code := a.lookup(r)
	if h == nil {
		a.logf("qrexec: %q: no handler, exit code %d", r.params.Cmdline, code)
	}
	req := &Request{Type: r.typ, Domain: domain, Port: port, Version: v, Command: r.cmd}
	if r.typ == MsgJustExec {
		// The caller only learns whether the service started.
		dc.send(MsgDataExitCode, encodeExitCode(code))
		rwc.Close()
		terminate()
		if h != nil {
			runHandler(ctx, h, req, strings.NewReader(""), io.Discard, io.Discard, a.logf)
		}
		return
	}
	if err := serveData(ctx, dc, h, req, code, a.logf); err != nil {
		a.logf("qrexec: %q: %v", r.params.Cmdline, err)
	}
}

// Call asks dom0 to run service ("qubes.Foo" or "qubes.Foo+arg") in
// target, as qrexec-client-vm does. stdin is sent to the service (nil for
// none); its stdout and stderr are written to stdout and stderr (nil to
// discard). It returns the service's exit code, ErrRefused if dom0's
// policy refused the call, or another error. Until Serve has a control
// connection up, Call waits for one (bounded by ctx).
func (a *Agent) Call(ctx context.Context, target, service string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	var s *session
	for s == nil {
		a.mu.Lock()
		s = a.sess
		ready := a.ready
		a.mu.Unlock()
		if s != nil {
			break
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
		}
	}
	ch := make(chan callResult, 1)
	s.mu.Lock()
	s.nextID++
	ident := fmt.Sprintf("CALL%d", s.nextID)
	s.mu.Unlock()
	t, payload, err := TriggerParams{Target: target, Ident: ident, Service: service}.Encode(s.version)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.pending[ident] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, ident)
		s.mu.Unlock()
	}
	if err := s.c.send(t, payload); err != nil {
		forget()
		return 0, err
	}
	var r callResult
	select {
	case r = <-ch:
	case <-ctx.Done():
		forget()
		return 0, ctx.Err()
	case <-s.done:
		forget()
		return 0, fmt.Errorf("%w: control connection ended during the call", ErrNotConnected)
	}
	if r.refused {
		return 0, fmt.Errorf("%w: %s in %s", ErrRefused, service, target)
	}
	defer s.sendTerminated(r.domain, r.port)
	rwc, err := a.dialer.Listen(ctx, r.domain, r.port)
	if err != nil {
		return 0, fmt.Errorf("qrexec: call %s: data connection %d:%d: %w", service, r.domain, r.port, err)
	}
	defer rwc.Close()
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer stop()
	dc := &conn{rwc: rwc}
	v, err := dataHandshake(dc)
	if err != nil {
		return 0, fmt.Errorf("qrexec: call %s: %w", service, err)
	}
	code, err := runClientSide(dc, v, stdin, stdout, stderr)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return code, err
}

package qrexec

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Data ports dom0 hands out: VCHAN_BASE_DATA_PORT (VCHAN_BASE_PORT+1) and
// up, one per connection in use, MAX_CLIENTS of them.
const (
	firstDataPort = 513
	maxDataPorts  = 256
)

// Daemon is the dom0 end of one VM's qrexec control connection, playing
// qrexec-daemon and qrexec-client together: it runs services in the VM
// (Exec, JustExec) and answers the VM's own calls with Go handlers chosen
// by Policy. It exists for host tests and for the Xen lab, where no Qubes
// dom0 is available; everything the VM sends is validated.
type Daemon struct {
	dialer Dialer

	// VM is the VM's domain id, the peer of every data connection.
	VM uint32
	// VMName is reported to dom0 handlers as the caller (Request.Source).
	VMName string
	// Local is the domain id the VM connects back to: 0 for dom0.
	Local uint32
	// Policy decides a call the VM makes: the handler to run it in dom0,
	// or nil to refuse. A nil Policy refuses everything. Set before Serve.
	Policy func(call TriggerParams) Handler
	// Logf, if set, reports refused calls and failed connections.
	Logf func(format string, args ...any)

	mu      sync.Mutex
	serving bool           // a Serve is running (handshake included)
	sess    *daemonSession // set once the handshake is done
	ready   chan struct{}  // closed while sess is set
}

type daemonSession struct {
	c       *conn
	version uint32

	mu    sync.Mutex
	ports map[uint32]bool // data ports in use
}

// NewDaemon returns a daemon that opens data connections with d.
func NewDaemon(d Dialer) *Daemon {
	return &Daemon{dialer: d, VMName: "vm", ready: make(chan struct{})}
}

func (d *Daemon) logf(format string, args ...any) {
	if d.Logf != nil {
		d.Logf(format, args...)
	}
}

// Serve runs the control connection until the VM closes it (nil), ctx
// ends or the VM sends something invalid (an error). It closes ctrl.
func (d *Daemon) Serve(ctx context.Context, ctrl io.ReadWriteCloser) error {
	ctx, cancel, done, err := serveControl(ctx, ctrl, &d.mu, &d.serving, "daemon already serves a VM")
	if err != nil {
		return err
	}
	defer done()

	c := &conn{rwc: ctrl}
	v, err := handshake(c)
	if err != nil {
		return fmt.Errorf("qrexec: daemon control connection: %w", err)
	}
	s := &daemonSession{c: c, version: v, ports: make(map[uint32]bool)}
	d.mu.Lock()
	d.sess = s
	close(d.ready)
	d.mu.Unlock()
	var wg sync.WaitGroup
	defer func() {
		cancel()
		d.mu.Lock()
		d.sess = nil
		d.ready = make(chan struct{})
		d.mu.Unlock()
		wg.Wait()
	}()
	for {
		h, err := c.readHeader()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		switch h.Type {
		case MsgConnectionTerminated:
			if h.Len != ExecParamsSize {
				return fmt.Errorf("qrexec: CONNECTION_TERMINATED with %d bytes, want %d", h.Len, ExecParamsSize)
			}
			b, err := c.readPayload(h)
			if err != nil {
				return err
			}
			_, port := decodeTarget(b)
			if !s.release(port) {
				return fmt.Errorf("qrexec: VM terminated port %d, which is not in use", port)
			}
		case MsgTriggerService3, MsgTriggerService4:
			call, err := d.readTrigger(s, h)
			if err != nil {
				return err
			}
			if call == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.serveCall(ctx, s, call)
			}()
		default:
			return fmt.Errorf("qrexec: unexpected %s (%d bytes) from the VM's agent", h.Type, h.Len)
		}
	}
}

type vmCall struct {
	params TriggerParams
	h      Handler
}

// readTrigger reads a VM's call. Framing errors end the session; a call
// with bad contents but a readable ident is refused, as qrexec-daemon does.
func (d *Daemon) readTrigger(s *daemonSession, h Header) (*vmCall, error) {
	fixed := TriggerParams3Size
	if h.Type == MsgTriggerService4 {
		if s.version < ProtocolV4 {
			return nil, fmt.Errorf("qrexec: VM sent TRIGGER_SERVICE4 on a protocol %d connection", s.version)
		}
		fixed = TriggerParams4Size
	}
	if h.Len <= uint32(fixed) || h.Len > uint32(fixed+MaxServiceNameLen+1) {
		return nil, fmt.Errorf("qrexec: %s with %d bytes, want %d to %d", h.Type, h.Len, fixed+1, fixed+MaxServiceNameLen+1)
	}
	b, err := s.c.readPayload(h)
	if err != nil {
		return nil, err
	}
	p, err := DecodeTriggerParams(h.Type, b)
	if err != nil {
		identAt := fixed - ServiceParamsSize
		ident, identErr := DecodeServiceParams(b[identAt : identAt+ServiceParamsSize])
		if identErr != nil {
			return nil, err
		}
		d.logf("qrexec: refusing call %q: %v", ident, err)
		return nil, s.refuse(ident)
	}
	var hd Handler
	if d.Policy != nil {
		hd = d.Policy(p)
	}
	if hd == nil {
		d.logf("qrexec: policy refuses %s to %s", p.Service, p.Target)
		return nil, s.refuse(p.Ident)
	}
	return &vmCall{params: p, h: hd}, nil
}

func identField(ident string) []byte {
	b := make([]byte, ServiceParamsSize)
	copy(b, ident)
	return b
}

func (s *daemonSession) refuse(ident string) error {
	return s.c.send(MsgServiceRefused, identField(ident))
}

func (s *daemonSession) allocPort() (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := uint32(firstDataPort); p < firstDataPort+maxDataPorts; p++ {
		if !s.ports[p] {
			s.ports[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("qrexec: all %d data ports are in use", maxDataPorts)
}

func (s *daemonSession) release(port uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.ports[port]
	delete(s.ports, port)
	return ok
}

// serveCall answers an allowed VM call: SERVICE_CONNECT, then the dom0
// handler serves the data connection, where the VM's agent is the server.
func (d *Daemon) serveCall(ctx context.Context, s *daemonSession, call *vmCall) {
	port, err := s.allocPort()
	if err != nil {
		d.logf("%v", err)
		s.refuse(call.params.Ident)
		return
	}
	if err := s.c.send(MsgServiceConnect, ExecParams{Domain: d.Local, Port: port}.target(), identField(call.params.Ident)); err != nil {
		return
	}
	rwc, err := d.dialer.Dial(ctx, d.VM, port)
	if err != nil {
		d.logf("qrexec: call %s: data connection: %v", call.params.Service, err)
		return
	}
	defer rwc.Close()
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer stop()
	dc := &conn{rwc: rwc}
	v, err := dataHandshake(dc)
	if err != nil {
		d.logf("qrexec: call %s: %v", call.params.Service, err)
		return
	}
	name, arg, _ := strings.Cut(call.params.Service, "+")
	req := &Request{Type: MsgServiceConnect, Domain: d.VM, Port: port, Version: v, Command: Command{
		User: "DEFAULT", Command: "QUBESRPC " + call.params.Service + " " + d.VMName,
		IsRPC: true, Service: name, Arg: arg, Source: d.VMName,
	}}
	if err := serveData(ctx, dc, call.h, req, 0, d.logf); err != nil {
		d.logf("qrexec: call %s: %v", call.params.Service, err)
	}
}

func (d *Daemon) session(ctx context.Context) (*daemonSession, error) {
	for {
		d.mu.Lock()
		s, ready := d.sess, d.ready
		d.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Exec runs "user:command" in the VM (EXEC_CMDLINE), sending stdin (nil
// for none) and collecting stdout and stderr (nil to discard); it returns
// the exit code. It waits for Serve to be connected.
func (d *Daemon) Exec(ctx context.Context, cmdline string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return d.exec(ctx, MsgExecCmdline, cmdline, stdin, stdout, stderr)
}

// JustExec starts "user:command" in the VM without stdio (JUST_EXEC) and
// returns the exit code the agent reports for starting it.
func (d *Daemon) JustExec(ctx context.Context, cmdline string) (int, error) {
	return d.exec(ctx, MsgJustExec, cmdline, nil, nil, nil)
}

func (d *Daemon) exec(ctx context.Context, t MsgType, cmdline string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(cmdline) > MaxCmdlineLen {
		return 0, fmt.Errorf("qrexec: command line is %d bytes, limit is %d", len(cmdline), MaxCmdlineLen)
	}
	s, err := d.session(ctx)
	if err != nil {
		return 0, err
	}
	port, err := s.allocPort()
	if err != nil {
		return 0, err
	}
	p, _ := ExecParams{Domain: d.Local, Port: port, Cmdline: cmdline}.MarshalBinary()
	if err := s.c.send(t, p); err != nil {
		s.release(port)
		return 0, err
	}
	rwc, err := d.dialer.Listen(ctx, d.VM, port)
	if err != nil {
		return 0, fmt.Errorf("qrexec: %s data connection on port %d: %w", t, port, err)
	}
	defer rwc.Close()
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer stop()
	dc := &conn{rwc: rwc}
	v, err := dataHandshake(dc)
	if err != nil {
		return 0, err
	}
	code, err := runClientSide(dc, v, stdin, stdout, stderr)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return code, err
}

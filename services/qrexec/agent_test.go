package qrexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testTimeout = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// dataConn is a data connection the agent opened, handed to the test,
// which plays the other end.
type dataConn struct {
	listen       bool // the agent called Listen (SERVICE_CONNECT), not Dial
	domain, port uint32
	c            net.Conn
}

// pipeDialer gives the agent in-memory data connections.
type pipeDialer struct {
	conns chan dataConn
	fail  error
}

func newPipeDialer() *pipeDialer { return &pipeDialer{conns: make(chan dataConn, 16)} }

func (d *pipeDialer) open(ctx context.Context, listen bool, domain, port uint32) (io.ReadWriteCloser, error) {
	if d.fail != nil {
		return nil, d.fail
	}
	a, b := net.Pipe()
	select {
	case d.conns <- dataConn{listen, domain, port, b}:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *pipeDialer) Dial(ctx context.Context, domain, port uint32) (io.ReadWriteCloser, error) {
	return d.open(ctx, false, domain, port)
}

func (d *pipeDialer) Listen(ctx context.Context, domain, port uint32) (io.ReadWriteCloser, error) {
	return d.open(ctx, true, domain, port)
}

func (d *pipeDialer) next(t *testing.T) dataConn {
	t.Helper()
	select {
	case dc := <-d.conns:
		dc.c.SetDeadline(time.Now().Add(testTimeout))
		return dc
	case <-time.After(testTimeout):
		t.Fatal("agent opened no data connection")
		return dataConn{}
	}
}

// fakeDom0 plays qrexec-daemon on the control connection.
type fakeDom0 struct {
	t       *testing.T
	c       net.Conn
	serveCh chan error
}

func startAgent(t *testing.T, a *Agent, dom0Version uint32) *fakeDom0 {
	t.Helper()
	ctx := testCtx(t)
	x, y := net.Pipe()
	y.SetDeadline(time.Now().Add(testTimeout))
	d := &fakeDom0{t: t, c: y, serveCh: make(chan error, 1)}
	go func() { d.serveCh <- a.Serve(ctx, x) }()
	// The agent speaks first (it is the vchan server and sends HELLO).
	hello := make([]byte, 12)
	if _, err := io.ReadFull(y, hello); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(cat(le32(0x300), le32(4), le32(4)), hello); d != "" {
		t.Fatalf("agent HELLO (-want +got):\n%s", d)
	}
	d.send(MsgHello, le32(dom0Version))
	// Serve registers the session after the handshake; Call needs it.
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(time.Millisecond) {
		a.mu.Lock()
		up := a.sess != nil
		a.mu.Unlock()
		if up || dom0Version < MinVersion {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("agent did not finish the handshake")
		}
	}
	t.Cleanup(func() {
		y.Close()
		select {
		case <-d.serveCh:
		case <-time.After(testTimeout):
			t.Error("Serve did not return after dom0 closed")
		}
	})
	return d
}

func (d *fakeDom0) send(typ MsgType, payload []byte) {
	d.t.Helper()
	if _, err := d.c.Write(cat(le32(uint32(typ)), le32(uint32(len(payload))), payload)); err != nil {
		d.t.Fatal(err)
	}
}

func readMsg(t *testing.T, c net.Conn) (MsgType, []byte) {
	t.Helper()
	var h [8]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("read header: %v", err)
	}
	var hdr Header
	hdr.UnmarshalBinary(h[:])
	b := make([]byte, hdr.Len)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %s payload: %v", hdr.Type, err)
	}
	return hdr.Type, b
}

func (d *fakeDom0) expectTerminated(domain, port uint32) {
	d.t.Helper()
	typ, b := readMsg(d.t, d.c)
	if typ != MsgConnectionTerminated || !bytes.Equal(b, cat(le32(domain), le32(port))) {
		d.t.Fatalf("got %s %x, want CONNECTION_TERMINATED for %d:%d", typ, b, domain, port)
	}
}

func execPayload(domain, port uint32, cmdline string) []byte {
	return cat(le32(domain), le32(port), []byte(cmdline), []byte{0})
}

// remoteHandshake is the other end's HELLO exchange with a given version;
// it returns what the agent announced.
func remoteHandshake(t *testing.T, c net.Conn, v uint32) uint32 {
	t.Helper()
	sent := make(chan struct{})
	go func() {
		c.Write(cat(le32(uint32(MsgHello)), le32(4), le32(v)))
		close(sent)
	}()
	defer func() { <-sent }() // nothing may overtake our HELLO
	typ, b := readMsg(t, c)
	if typ != MsgHello || len(b) != 4 {
		t.Fatalf("got %s %x, want HELLO", typ, b)
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// echo copies stdin to stdout, says hello on stderr and exits with 3.
func echo(got *Request) Handler {
	return func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		*got = *req
		if _, err := io.Copy(stdout, stdin); err != nil {
			fmt.Fprintf(stderr, "copy: %v", err)
			return 1
		}
		io.WriteString(stderr, "err-text")
		return 3
	}
}

func TestEchoServiceAcrossVersions(t *testing.T) {
	input := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes: several chunks
	for _, tc := range []struct{ dom0, data, want uint32 }{
		{4, 4, 4}, {3, 3, 3}, {4, 3, 3}, {3, 4, 4}, {7, 9, 4},
	} {
		t.Run(fmt.Sprintf("ctrl%d-data%d", tc.dom0, tc.data), func(t *testing.T) {
			dialer := newPipeDialer()
			a := NewAgent(dialer)
			var got Request
			a.Handle("qubes.Echo", echo(&got))
			d := startAgent(t, a, tc.dom0)
			d.send(MsgExecCmdline, execPayload(0, 513, "user:QUBESRPC qubes.Echo+some-arg dom0"))
			dc := dialer.next(t)
			if dc.listen || dc.domain != 0 || dc.port != 513 {
				t.Fatalf("data connection %+v, want Dial to 0:513", dc)
			}
			if v := remoteHandshake(t, dc.c, tc.data); v != 4 {
				t.Errorf("agent announced %d on the data connection", v)
			}
			var stdout, stderr bytes.Buffer
			code, err := runClientSide(&conn{rwc: dc.c}, tc.want, bytes.NewReader(input), &stdout, &stderr)
			if err != nil {
				t.Fatal(err)
			}
			if code != 3 || !bytes.Equal(stdout.Bytes(), input) || stderr.String() != "err-text" {
				t.Errorf("code %d, stdout %d bytes (equal %v), stderr %q", code, stdout.Len(), bytes.Equal(stdout.Bytes(), input), stderr.String())
			}
			d.expectTerminated(0, 513)
			want := Request{Type: MsgExecCmdline, Domain: 0, Port: 513, Version: tc.want, Command: Command{
				User: "user", Command: "QUBESRPC qubes.Echo+some-arg dom0", IsRPC: true,
				Service: "qubes.Echo", Arg: "some-arg", Source: "dom0"}}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("request (-want +got):\n%s", d)
			}
		})
	}
}

// TestDataStreamBytes checks the agent's side of a data connection byte
// by byte: chunks cut at 65536, EOF on stdout then stderr, exit code.
func TestDataStreamBytes(t *testing.T) {
	dialer := newPipeDialer()
	a := NewAgent(dialer)
	a.Handle("qubes.Big", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		in, _ := io.ReadAll(stdin)
		stdout.Write(bytes.Repeat([]byte("x"), 150000))
		stdout.Write(nil) // an empty write is not an EOF
		stderr.Write(in)
		return -2
	})
	d := startAgent(t, a, 4)
	d.send(MsgExecCmdline, execPayload(3, 600, "u:QUBESRPC qubes.Big vm1"))
	dc := dialer.next(t)
	remoteHandshake(t, dc.c, 4)
	go dc.c.Write(cat(le32(0x190), le32(2), []byte("hi"), le32(0x190), le32(0)))
	type msg struct {
		Type MsgType
		Len  int
		Data string
	}
	var got []msg
	for {
		typ, b := readMsg(t, dc.c)
		m := msg{typ, len(b), ""}
		if typ != MsgDataStdout {
			m.Data = string(b)
		}
		got = append(got, m)
		if typ == MsgDataExitCode {
			break
		}
	}
	want := []msg{
		{MsgDataStdout, 65536, ""}, {MsgDataStdout, 65536, ""}, {MsgDataStdout, 150000 - 2*65536, ""},
		{MsgDataStderr, 2, "hi"}, {MsgDataStdout, 0, ""}, {MsgDataStderr, 0, ""},
		{MsgDataExitCode, 4, string(le32(0xfffffffe))},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("data messages (-want +got):\n%s", d)
	}
	d.expectTerminated(3, 600)
}

// runRaw sends one request and returns what the agent sent on the data
// connection after the handshake, up to and including the exit code.
func runRaw(t *testing.T, a *Agent, dialer *pipeDialer, typ MsgType, cmdline []byte) [][2]uint32 {
	t.Helper()
	d := startAgent(t, a, 4)
	d.send(typ, cat(le32(2), le32(700), cmdline))
	dc := dialer.next(t)
	remoteHandshake(t, dc.c, 4)
	if typ == MsgExecCmdline {
		go dc.c.Write(cat(le32(0x190), le32(0)))
	}
	var got [][2]uint32
	for {
		mt, b := readMsg(t, dc.c)
		v := uint32(len(b))
		if mt == MsgDataExitCode {
			v = uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		}
		got = append(got, [2]uint32{uint32(mt), v})
		if mt == MsgDataExitCode {
			break
		}
	}
	d.expectTerminated(2, 700)
	return got
}

func TestRequestsWithoutHandler(t *testing.T) {
	eofsThen := func(code uint32) [][2]uint32 {
		return [][2]uint32{{0x191, 0}, {0x192, 0}, {0x193, code}}
	}
	ran := make(chan string, 4)
	cmdHandler := func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		ran <- req.Command.Command
		return 0
	}
	tests := []struct {
		name       string
		typ        MsgType
		cmdline    string
		cmdHandler bool
		want       [][2]uint32
		ran        string
	}{
		{"unknown-service", MsgExecCmdline, "user:QUBESRPC qubes.Nope dom0\x00", false, eofsThen(127), ""},
		{"shell-command", MsgExecCmdline, "user:ls -l\x00", false, eofsThen(127), ""},
		{"shell-command-handler", MsgExecCmdline, "user:ls -l\x00", true, eofsThen(0), "ls -l"},
		{"no-colon", MsgExecCmdline, "QUBESRPC qubes.Echo dom0\x00", false, eofsThen(125), ""},
		{"junk-after-nul", MsgExecCmdline, "user:QUBESRPC qubes.Echo dom0\x00junk\x00", false, eofsThen(125), ""},
		{"just-exec-unknown", MsgJustExec, "user:QUBESRPC qubes.Nope dom0\x00", false, [][2]uint32{{0x193, 127}}, ""},
		{"just-exec-bad", MsgJustExec, "nocolon\x00", false, [][2]uint32{{0x193, 125}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dialer := newPipeDialer()
			a := NewAgent(dialer)
			var got Request
			a.Handle("qubes.Echo", echo(&got))
			if tt.cmdHandler {
				a.CommandHandler = cmdHandler
			}
			if d := cmp.Diff(tt.want, runRaw(t, a, dialer, tt.typ, []byte(tt.cmdline))); d != "" {
				t.Errorf("data messages (-want +got):\n%s", d)
			}
			if tt.ran != "" && <-ran != tt.ran {
				t.Errorf("command handler did not run %q", tt.ran)
			}
		})
	}
}

func TestJustExecRunsDetached(t *testing.T) {
	dialer := newPipeDialer()
	a := NewAgent(dialer)
	release := make(chan struct{})
	ran := make(chan *Request, 1)
	a.Handle("qubes.Start", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		<-release // the caller got its exit code before the handler finishes
		in, _ := io.ReadAll(stdin)
		n, err := stdout.Write([]byte("ignored"))
		if len(in) != 0 || n != 7 || err != nil {
			t.Errorf("JUST_EXEC stdio: stdin %q, stdout write %d %v", in, n, err)
		}
		ran <- req
		return 0
	})
	if d := cmp.Diff([][2]uint32{{0x193, 0}}, runRaw(t, a, dialer, MsgJustExec, []byte("u:QUBESRPC qubes.Start dom0\x00"))); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	close(release)
	select {
	case req := <-ran:
		if req.Type != MsgJustExec {
			t.Errorf("request type %s", req.Type)
		}
	case <-time.After(testTimeout):
		t.Fatal("handler did not run")
	}
}

func TestArgumentSpecificHandlerWins(t *testing.T) {
	dialer := newPipeDialer()
	a := NewAgent(dialer)
	a.Logf = t.Logf
	codes := map[string]int{"qubes.Svc": 10, "qubes.Svc+special": 11}
	for name, code := range codes {
		a.Handle(name, func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int { return code })
	}
	if err := a.Handle("qubes.Svc+", nil); err == nil {
		t.Error("Handle accepted a trailing '+'")
	}
	if err := a.Handle("bad/name", nil); err == nil {
		t.Error("Handle accepted a '/'")
	}
	d := startAgent(t, a, 4)
	for i, tc := range []struct {
		desc string
		code uint32
	}{{"qubes.Svc+special", 11}, {"qubes.Svc+other", 10}, {"qubes.Svc", 10}, {"qubes.Svc+", 10}} {
		port := uint32(800 + i)
		d.send(MsgExecCmdline, execPayload(0, port, "u:QUBESRPC "+tc.desc+" dom0"))
		dc := dialer.next(t)
		remoteHandshake(t, dc.c, 4)
		code, err := runClientSide(&conn{rwc: dc.c}, 4, nil, nil, nil)
		if err != nil || uint32(code) != tc.code {
			t.Errorf("%s: exit %d, %v; want %d", tc.desc, code, err, tc.code)
		}
		d.expectTerminated(0, port)
	}
}

func TestHandlerPanicReportsProblem(t *testing.T) {
	dialer := newPipeDialer()
	var logged []string
	var mu sync.Mutex
	a := NewAgent(dialer)
	a.Logf = func(f string, args ...any) { mu.Lock(); logged = append(logged, fmt.Sprintf(f, args...)); mu.Unlock() }
	a.Handle("qubes.Boom", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		panic("boom")
	})
	if d := cmp.Diff([][2]uint32{{0x191, 0}, {0x192, 0}, {0x193, 125}}, runRaw(t, a, dialer, MsgExecCmdline, []byte("u:QUBESRPC qubes.Boom dom0\x00"))); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) == 0 || !strings.Contains(logged[0], "panicked: boom") {
		t.Errorf("log = %q", logged)
	}
}

func TestDialFailureStillFreesPort(t *testing.T) {
	dialer := newPipeDialer()
	dialer.fail = errors.New("no vchan")
	a := NewAgent(dialer)
	d := startAgent(t, a, 4)
	d.send(MsgExecCmdline, execPayload(0, 900, "u:QUBESRPC qubes.X dom0"))
	d.expectTerminated(0, 900)
}

func TestCall(t *testing.T) {
	for _, v := range []uint32{3, 4} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			ctx := testCtx(t)
			dialer := newPipeDialer()
			a := NewAgent(dialer)
			d := startAgent(t, a, v)
			type result struct {
				Code           int
				Stdout, Stderr string
				Err            error
			}
			res := make(chan result, 1)
			go func() {
				var so, se bytes.Buffer
				code, err := a.Call(ctx, "@default", "qubes.Filecopy+x", strings.NewReader("payload"), &so, &se)
				res <- result{code, so.String(), se.String(), err}
			}()
			typ, b := readMsg(t, d.c)
			if v == 4 {
				if typ != MsgTriggerService4 || !bytes.Equal(b[:64], make([]byte, 64)) {
					t.Fatalf("got %s, want TRIGGER_SERVICE4 with an empty source", typ)
				}
				b = b[64:]
			} else if typ != MsgTriggerService3 {
				t.Fatalf("got %s, want TRIGGER_SERVICE3", typ)
			}
			if len(b) != TriggerParams3Size+len("qubes.Filecopy+x\x00") ||
				string(bytes.TrimRight(b[:64], "\x00")) != "@default" || string(b[96:]) != "qubes.Filecopy+x\x00" {
				t.Fatalf("trigger payload %q", b)
			}
			ident := b[64:96]
			d.send(MsgServiceConnect, cat(le32(5), le32(1024), ident))
			dc := dialer.next(t)
			if !dc.listen || dc.domain != 5 || dc.port != 1024 {
				t.Fatalf("data connection %+v, want Listen on 5:1024", dc)
			}
			remoteHandshake(t, dc.c, v)
			// Play the called service: read stdin to EOF, answer.
			var in bytes.Buffer
			sr := &stdinReader{c: &conn{rwc: dc.c}, maxChunk: MaxChunk(v)}
			if _, err := io.Copy(&in, sr); err != nil {
				t.Fatal(err)
			}
			dc.c.Write(cat(le32(0x191), le32(3), []byte("out"), le32(0x192), le32(3), []byte("err"),
				le32(0x191), le32(0), le32(0x192), le32(0), le32(0x193), le32(4), le32(42)))
			d.expectTerminated(5, 1024)
			r := <-res
			if d := cmp.Diff(result{42, "out", "err", nil}, r, cmp.Comparer(func(a, b error) bool { return a == b })); d != "" {
				t.Errorf("Call (-want +got):\n%s", d)
			}
			if in.String() != "payload" {
				t.Errorf("service got stdin %q", in.String())
			}
		})
	}
}

func TestCallRefused(t *testing.T) {
	ctx := testCtx(t)
	a := NewAgent(newPipeDialer())
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := a.Call(short, "vm", "qubes.X", nil, nil, nil); !errors.Is(err, ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Call without Serve = %v", err)
	}
	d := startAgent(t, a, 4)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Call(ctx, "vm", "qubes.X", nil, nil, nil)
		errc <- err
	}()
	_, b := readMsg(t, d.c)
	// An answer for an ident nobody waits for is ignored, as by Linux.
	stray := make([]byte, 32)
	copy(stray, "SOCKET99")
	d.send(MsgServiceRefused, stray)
	d.send(MsgServiceRefused, b[128:160])
	if err := <-errc; !errors.Is(err, ErrRefused) {
		t.Errorf("Call = %v, want ErrRefused", err)
	}
}

func TestHandshakeFailures(t *testing.T) {
	tests := []struct {
		name    string
		reply   []byte
		wantErr string
	}{
		{"v2", cat(le32(0x300), le32(4), le32(2)), "peer speaks protocol 2"},
		{"wrong-type", cat(le32(0x200), le32(4), le32(4)), "want HELLO with 4 bytes first, got EXEC_CMDLINE"},
		{"wrong-len", cat(le32(0x300), le32(8), le32(4), le32(4)), "got HELLO with 8"},
		{"truncated", cat(le32(0x300), le32(4), []byte{4}), "unexpected EOF"},
		{"closed", nil, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, y := net.Pipe()
			go func() {
				io.ReadFull(y, make([]byte, 12))
				y.Write(tt.reply)
				y.Close()
			}()
			err := NewAgent(newPipeDialer()).Serve(testCtx(t), x)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Serve = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestHostileControlStream(t *testing.T) {
	tests := []struct {
		name    string
		stream  []byte
		wantErr string
	}{
		{"unknown-type", cat(le32(0x999), le32(0)), "unexpected MsgType(0x999)"},
		{"hello-again", cat(le32(0x300), le32(4), le32(4)), "unexpected HELLO"},
		{"stdin-on-control", cat(le32(0x190), le32(1), []byte("x")), "unexpected DATA_STDIN"},
		{"exec-no-cmdline", cat(le32(0x200), le32(8), le32(0), le32(1)), "EXEC_CMDLINE with 8 bytes"},
		{"exec-huge", cat(le32(0x200), le32(0xffffffff)), "4294967295 bytes of exec_params"},
		{"exec-truncated", cat(le32(0x201), le32(20), le32(0)), "stream ended inside JUST_EXEC"},
		{"connect-short", cat(le32(0x202), le32(39), make([]byte, 39)), "SERVICE_CONNECT with 39 bytes, want 40"},
		{"connect-bad-ident", cat(le32(0x202), le32(40), make([]byte, 8), []byte("a/b"), make([]byte, 29)), "forbidden byte 0x2f"},
		{"refused-long", cat(le32(0x203), le32(33), make([]byte, 33)), "SERVICE_REFUSED with 33 bytes"},
		{"refused-unterminated", cat(le32(0x203), le32(32), bytes.Repeat([]byte("a"), 32)), "not NUL-terminated"},
		{"header-truncated", []byte{0, 2, 0}, "stream ended inside a header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, y := net.Pipe()
			defer y.Close()
			go func() {
				io.ReadFull(y, make([]byte, 12))
				y.Write(cat(le32(0x300), le32(4), le32(4)))
				y.Write(tt.stream)
				y.Close()
			}()
			err := NewAgent(newPipeDialer()).Serve(testCtx(t), x)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Serve = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestHostileDataPeer(t *testing.T) {
	tests := []struct {
		name    string
		stream  []byte
		wantErr string
	}{
		{"stdout-from-caller", cat(le32(0x191), le32(1), []byte("x")), "got DATA_STDOUT on a service's data connection"},
		{"chunk-too-big", cat(le32(0x190), le32(65537)), "stdin chunk of 65537 bytes, limit is 65536"},
		{"closed-mid-chunk", cat(le32(0x190), le32(10), []byte("abc")), "stream ended inside a stdin chunk"},
		{"closed-without-eof", cat(le32(0x190), le32(3), []byte("abc")), "closed without stdin EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dialer := newPipeDialer()
			a := NewAgent(dialer)
			readErr := make(chan error, 1)
			a.Handle("qubes.In", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
				_, err := io.ReadAll(stdin)
				readErr <- err
				return 0
			})
			d := startAgent(t, a, 4)
			d.send(MsgExecCmdline, execPayload(0, 1000, "u:QUBESRPC qubes.In dom0"))
			dc := dialer.next(t)
			remoteHandshake(t, dc.c, 4)
			go io.Copy(io.Discard, dc.c)
			dc.c.Write(tt.stream)
			dc.c.Close()
			select {
			case err := <-readErr:
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("stdin error %v, want %q", err, tt.wantErr)
				}
			case <-time.After(testTimeout):
				t.Fatal("handler's stdin read did not fail")
			}
			d.expectTerminated(0, 1000)
		})
	}
}

func TestHostileServiceAnswersCall(t *testing.T) {
	tests := []struct {
		name    string
		stream  []byte
		wantErr string
	}{
		{"stdin-from-service", cat(le32(0x190), le32(0)), "got DATA_STDIN from a service"},
		{"exit-code-short", cat(le32(0x193), le32(2), []byte{1, 0}), "exit code message has 2 bytes"},
		{"stdout-after-eof", cat(le32(0x191), le32(0), le32(0x191), le32(1), []byte("x")), "DATA_STDOUT data after its EOF"},
		{"chunk-too-big", cat(le32(0x192), le32(70000)), "chunk of 70000 bytes"},
		{"no-exit-code", cat(le32(0x191), le32(0)), "without an exit code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			dialer := newPipeDialer()
			a := NewAgent(dialer)
			d := startAgent(t, a, 4)
			errc := make(chan error, 1)
			go func() {
				_, err := a.Call(ctx, "vm", "qubes.X", nil, nil, nil)
				errc <- err
			}()
			_, b := readMsg(t, d.c)
			d.send(MsgServiceConnect, cat(le32(5), le32(1100), b[128:160]))
			dc := dialer.next(t)
			remoteHandshake(t, dc.c, 4)
			go io.Copy(io.Discard, dc.c)
			go func() {
				// The agent stops reading at the first bad byte.
				dc.c.Write(tt.stream)
				dc.c.Close()
			}()
			d.expectTerminated(5, 1100)
			if err := <-errc; err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Call = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestServeStopsWithContext(t *testing.T) {
	dialer := newPipeDialer()
	a := NewAgent(dialer)
	started := make(chan struct{})
	a.Handle("qubes.Block", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		close(started)
		io.ReadAll(stdin) // fails once the agent closes the data connection
		return 0
	})
	ctx, cancel := context.WithCancel(context.Background())
	x, y := net.Pipe()
	defer y.Close()
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, x) }()
	io.ReadFull(y, make([]byte, 12))
	y.Write(cat(le32(0x300), le32(4), le32(4)))
	go io.Copy(io.Discard, y)
	y.Write(cat(le32(0x200), le32(uint32(len(execPayload(0, 1, "u:QUBESRPC qubes.Block dom0")))), execPayload(0, 1, "u:QUBESRPC qubes.Block dom0")))
	dc := dialer.next(t)
	remoteHandshake(t, dc.c, 4)
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not stop")
	}
}

func TestConcurrencyBound(t *testing.T) {
	dialer := newPipeDialer()
	a := NewAgent(dialer)
	a.MaxConcurrent = 2
	var mu sync.Mutex
	running, peak := 0, 0
	release := make(chan struct{})
	a.Handle("qubes.Slow", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return 0
	})
	d := startAgent(t, a, 4)
	go io.Copy(io.Discard, d.c) // CONNECTION_TERMINATED messages
	go func() {
		for i := uint32(0); i < 5; i++ {
			p := execPayload(0, 2000+i, "u:QUBESRPC qubes.Slow dom0")
			d.c.Write(cat(le32(0x201), le32(uint32(len(p))), p))
		}
	}()
	var conns []dataConn
	for i := 0; i < 2; i++ {
		dc := dialer.next(t)
		remoteHandshake(t, dc.c, 4)
		readMsg(t, dc.c) // exit code 0
		conns = append(conns, dc)
	}
	select {
	case dc := <-dialer.conns:
		t.Fatalf("third request started (port %d) while two run", dc.port)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	for i := 0; i < 3; i++ {
		dc := dialer.next(t)
		remoteHandshake(t, dc.c, 4)
		readMsg(t, dc.c)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 2 {
		t.Errorf("peak concurrency %d, want 2", peak)
	}
}

func TestSilentDataPeerTimesOut(t *testing.T) {
	defer func(d time.Duration) { dataHandshakeTimeout = d }(dataHandshakeTimeout)
	dataHandshakeTimeout = 50 * time.Millisecond
	dialer := newPipeDialer()
	a := NewAgent(dialer)
	logged := make(chan string, 4)
	a.Logf = func(f string, args ...any) { logged <- fmt.Sprintf(f, args...) }
	d := startAgent(t, a, 4)
	d.send(MsgExecCmdline, execPayload(0, 1200, "u:QUBESRPC qubes.X dom0"))
	dc := dialer.next(t)
	go io.Copy(io.Discard, dc.c) // reads the agent's HELLO, never answers
	d.expectTerminated(0, 1200)
	if msg := <-logged; !strings.Contains(msg, "no HELLO on the data connection within 50ms") {
		t.Errorf("log = %q", msg)
	}
}

// A handler that makes a Call while it holds the only slot must still get
// dom0's SERVICE_CONNECT, even with another request waiting for the slot.
func TestNestedCallWithFullSlots(t *testing.T) {
	dialer := newPipeDialer()
	a := NewAgent(dialer)
	a.MaxConcurrent = 1
	a.Handle("qubes.Outer", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		code, err := a.Call(ctx, "vm2", "qubes.Inner", nil, stdout, nil)
		if err != nil {
			return 99
		}
		return code
	})
	d := startAgent(t, a, 4)
	d.send(MsgExecCmdline, execPayload(0, 1, "u:QUBESRPC qubes.Outer dom0"))
	dc1 := dialer.next(t)
	remoteHandshake(t, dc1.c, 4)
	outer := make(chan int, 1)
	go func() {
		code, _ := runClientSide(&conn{rwc: dc1.c}, 4, nil, io.Discard, io.Discard)
		outer <- code
	}()
	typ, b := readMsg(t, d.c)
	if typ != MsgTriggerService4 {
		t.Fatalf("got %s, want TRIGGER_SERVICE4", typ)
	}
	d.send(MsgExecCmdline, execPayload(0, 2, "u:QUBESRPC qubes.Outer dom0")) // waits for the slot
	d.send(MsgServiceConnect, cat(le32(7), le32(3), b[128:160]))
	dc3 := dialer.next(t)
	if !dc3.listen || dc3.port != 3 {
		t.Fatalf("data connection %+v, want Listen on port 3", dc3)
	}
	remoteHandshake(t, dc3.c, 4)
	io.Copy(io.Discard, &stdinReader{c: &conn{rwc: dc3.c}, maxChunk: MaxDataChunk})
	dc3.c.Write(cat(le32(0x193), le32(4), le32(5)))
	d.expectTerminated(7, 3)
	d.expectTerminated(0, 1)
	if code := <-outer; code != 5 {
		t.Errorf("outer exit code %d, want 5", code)
	}
}

func TestSecondServeRefused(t *testing.T) {
	a := NewAgent(newPipeDialer())
	startAgent(t, a, 4)
	x, y := net.Pipe()
	defer y.Close()
	if err := a.Serve(testCtx(t), x); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Errorf("second Serve = %v", err)
	}
}

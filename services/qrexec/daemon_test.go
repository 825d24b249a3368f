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

// pipeNet connects Listen and Dial on the same port, like vchan server
// and client, with in-memory pipes. Domain ids are not checked.
type pipeNet struct {
	mu    sync.Mutex
	ports map[uint32]chan net.Conn
}

func (n *pipeNet) port(p uint32) chan net.Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ports == nil {
		n.ports = make(map[uint32]chan net.Conn)
	}
	if n.ports[p] == nil {
		n.ports[p] = make(chan net.Conn)
	}
	return n.ports[p]
}

func (n *pipeNet) Listen(ctx context.Context, domain, port uint32) (io.ReadWriteCloser, error) {
	a, b := net.Pipe()
	select {
	case n.port(port) <- b:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (n *pipeNet) Dial(ctx context.Context, domain, port uint32) (io.ReadWriteCloser, error) {
	select {
	case c := <-n.port(port):
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// linked runs an Agent and a Daemon against each other.
func linked(t *testing.T, setup func(a *Agent, d *Daemon)) (*Agent, *Daemon) {
	t.Helper()
	ctx := testCtx(t)
	nw := &pipeNet{}
	a, d := NewAgent(nw), NewDaemon(nw)
	d.VM, d.VMName = 7, "sys-firewall"
	a.Logf, d.Logf = t.Logf, t.Logf
	setup(a, d)
	x, y := net.Pipe()
	errs := make(chan error, 2)
	go func() { errs <- a.Serve(ctx, x) }()
	go func() { errs <- d.Serve(ctx, y) }()
	t.Cleanup(func() {
		x.Close()
		for i := 0; i < 2; i++ {
			select {
			case <-errs:
			case <-time.After(testTimeout):
				t.Error("Serve did not return")
			}
		}
	})
	return a, d
}

func TestDaemonExecAgainstAgent(t *testing.T) {
	ctx := testCtx(t)
	var mu sync.Mutex
	var got Request
	_, d := linked(t, func(a *Agent, d *Daemon) {
		a.Handle("qubes.Echo", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
			var r Request
			code := echo(&r)(ctx, req, stdin, stdout, stderr)
			mu.Lock()
			got = r
			mu.Unlock()
			return code
		})
	})
	in := bytes.Repeat([]byte("z"), 200000)
	// Run several calls at once: ports are allocated and released.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errOut bytes.Buffer
			code, err := d.Exec(ctx, "user:QUBESRPC qubes.Echo+a dom0", bytes.NewReader(in), &out, &errOut)
			if err != nil || code != 3 || !bytes.Equal(out.Bytes(), in) || errOut.String() != "err-text" {
				t.Errorf("Exec: %d, %v, %d bytes out, stderr %q", code, err, out.Len(), errOut.String())
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if got.Service != "qubes.Echo" || got.Arg != "a" || got.Version != 4 || got.Port < 513 || got.Port >= 513+4 {
		t.Errorf("request %+v", got)
	}
	if code, err := d.Exec(ctx, "user:QUBESRPC qubes.Missing dom0", nil, nil, nil); err != nil || code != ExitServiceNotFound {
		t.Errorf("missing service: %d, %v", code, err)
	}
	if code, err := d.JustExec(ctx, "user:QUBESRPC qubes.Echo dom0"); err != nil || code != 0 {
		t.Errorf("JustExec: %d, %v", code, err)
	}
}

func TestAgentCallsDaemon(t *testing.T) {
	ctx := testCtx(t)
	var seen []TriggerParams
	var mu sync.Mutex
	a, _ := linked(t, func(a *Agent, d *Daemon) {
		d.Policy = func(call TriggerParams) Handler {
			mu.Lock()
			seen = append(seen, call)
			mu.Unlock()
			if call.Service != "qubes.Upper+x" {
				return nil
			}
			return func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
				b, _ := io.ReadAll(stdin)
				fmt.Fprintf(stdout, "%s from %s arg %s", strings.ToUpper(string(b)), req.Source, req.Arg)
				return 4
			}
		}
	})
	var out bytes.Buffer
	code, err := a.Call(ctx, "dom0", "qubes.Upper+x", strings.NewReader("hello"), &out, nil)
	if err != nil || code != 4 || out.String() != "HELLO from sys-firewall arg x" {
		t.Errorf("Call = %d, %v, %q", code, err, out.String())
	}
	if _, err := a.Call(ctx, "dom0", "qubes.Other", nil, nil, nil); !errors.Is(err, ErrRefused) {
		t.Errorf("refused Call = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []TriggerParams{
		{Target: "dom0", Ident: "CALL1", Service: "qubes.Upper+x"},
		{Target: "dom0", Ident: "CALL2", Service: "qubes.Other"},
	}
	if d := cmp.Diff(want, seen); d != "" {
		t.Errorf("calls seen by policy (-want +got):\n%s", d)
	}
}

func TestDecodeTriggerParams(t *testing.T) {
	field := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	tests := []struct {
		name    string
		typ     MsgType
		in      []byte
		want    TriggerParams
		wantErr string
	}{
		{"v3", MsgTriggerService3, cat(field("dom0", 64), field("CALL1", 32), []byte("qubes.X+y\x00")),
			TriggerParams{Target: "dom0", Ident: "CALL1", Service: "qubes.X+y"}, ""},
		{"v4", MsgTriggerService4, cat(field("sys-net", 64), field("@dispvm:dvm", 64), field("SOCKET5", 32), []byte("qubes.X\x00")),
			TriggerParams{Source: "sys-net", Target: "@dispvm:dvm", Ident: "SOCKET5", Service: "qubes.X"}, ""},
		{"v4-no-source", MsgTriggerService4, cat(field("", 64), field("vm", 64), field("A", 32), []byte("s\x00")),
			TriggerParams{Target: "vm", Ident: "A", Service: "s"}, ""},
		{"no-name", MsgTriggerService3, cat(field("dom0", 64), field("A", 32)), TriggerParams{}, "payload is 96 bytes"},
		{"wrong-type", MsgExecCmdline, nil, TriggerParams{}, "not a trigger message"},
		{"name-unterminated", MsgTriggerService3, cat(field("dom0", 64), field("A", 32), []byte("s")), TriggerParams{}, "not a single NUL-terminated"},
		{"name-inner-nul", MsgTriggerService3, cat(field("dom0", 64), field("A", 32), []byte("s\x00t\x00")), TriggerParams{}, "not a single NUL-terminated"},
		{"name-bad-char", MsgTriggerService3, cat(field("dom0", 64), field("A", 32), []byte("a/b\x00")), TriggerParams{}, "forbidden byte 0x2f"},
		{"target-unterminated", MsgTriggerService3, cat(bytes.Repeat([]byte("a"), 64), field("A", 32), []byte("s\x00")), TriggerParams{}, "not NUL-terminated within 64"},
		{"target-empty", MsgTriggerService3, cat(field("", 64), field("A", 32), []byte("s\x00")), TriggerParams{}, "must be 1 to 63"},
		{"ident-bad", MsgTriggerService3, cat(field("dom0", 64), field("a/b", 32), []byte("s\x00")), TriggerParams{}, "forbidden byte 0x2f"},
		{"source-bad", MsgTriggerService4, cat(field("a b", 64), field("vm", 64), field("A", 32), []byte("s\x00")), TriggerParams{}, "forbidden byte 0x20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeTriggerParams(tt.typ, tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			// What Encode builds, Decode reads back.
			typ, b, err := got.Encode(map[MsgType]uint32{MsgTriggerService3: 3, MsgTriggerService4: 4}[tt.typ])
			if err != nil || typ != tt.typ || !bytes.Equal(b, tt.in) {
				t.Errorf("Encode = %s %q, %v", typ, b, err)
			}
		})
	}
}

func TestDaemonRejectsBadAgent(t *testing.T) {
	field := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	msg := func(typ MsgType, p []byte) []byte { return cat(le32(uint32(typ)), le32(uint32(len(p))), p) }
	tests := []struct {
		name    string
		version uint32
		stream  []byte
		refused string // the daemon answers SERVICE_REFUSED with this ident
		wantErr string
	}{
		{"unknown-type", 4, msg(0x999, nil), "", "unexpected MsgType(0x999)"},
		{"exec-from-vm", 4, msg(MsgExecCmdline, execPayload(0, 1, "u:c")), "", "unexpected EXEC_CMDLINE"},
		{"terminated-unknown-port", 4, msg(MsgConnectionTerminated, cat(le32(0), le32(600))), "", "port 600, which is not in use"},
		{"terminated-short", 4, msg(MsgConnectionTerminated, le32(0)), "", "CONNECTION_TERMINATED with 4 bytes"},
		{"trigger4-on-v3", 3, msg(MsgTriggerService4, cat(field("", 64), field("vm", 64), field("A", 32), []byte("s\x00"))), "", "TRIGGER_SERVICE4 on a protocol 3"},
		{"trigger-huge", 4, cat(le32(0x212), le32(0x7fffffff)), "", "want 97 to 65097"},
		{"trigger-bad-ident", 4, msg(MsgTriggerService3, cat(field("vm", 64), field("a/b", 32), []byte("s\x00"))), "", "forbidden byte 0x2f"},
		{"trigger-bad-name-refused", 4, msg(MsgTriggerService3, cat(field("vm", 64), field("ID", 32), []byte("a/b\x00"))), "ID", ""},
		{"trigger-policy-refused", 4, msg(MsgTriggerService3, cat(field("vm", 64), field("ID2", 32), []byte("qubes.X\x00"))), "ID2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, y := net.Pipe()
			y.SetDeadline(time.Now().Add(testTimeout))
			errc := make(chan error, 1)
			go func() { errc <- NewDaemon(&pipeNet{}).Serve(testCtx(t), x) }()
			y.Write(cat(le32(0x300), le32(4), le32(tt.version)))
			readMsg(t, y) // the daemon's HELLO
			go y.Write(tt.stream)
			if tt.refused != "" {
				typ, b := readMsg(t, y)
				if typ != MsgServiceRefused || !bytes.Equal(b, field(tt.refused, 32)) {
					t.Errorf("got %s %q, want SERVICE_REFUSED %q", typ, b, tt.refused)
				}
				y.Close()
			}
			err := <-errc
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Serve = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Serve = %v, want %q", err, tt.wantErr)
			}
			y.Close()
		})
	}
}

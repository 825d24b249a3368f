package qubesdb

import (
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

// pair connects a Server holding entries with a Client over net.Pipe.
func pair(t *testing.T, entries map[string]string, opts Options) (*Server, *Client) {
	t.Helper()
	ctx := testCtx(t)
	srv := NewServer(Options{})
	for k, v := range entries {
		if err := srv.Write(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	a, b := net.Pipe()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, a) }()
	c, err := Connect(ctx, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		select {
		case err := <-serveErr:
			if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, io.ErrClosedPipe) && !strings.Contains(err.Error(), "closed pipe") {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(testTimeout):
			t.Error("Serve did not return after the client closed")
		}
	})
	return srv, c
}

var proxyVMEntries = map[string]string{
	"/qubes-ip":                          "10.137.0.6",
	"/qubes-gateway":                     "10.137.0.1",
	"/qubes-netmask":                     "255.255.255.255",
	"/qubes-primary-dns":                 "10.139.1.1",
	"/qubes-secondary-dns":               "10.139.1.2",
	"/qubes-netvm-gateway":               "10.137.0.6",
	"/connected-ips":                     "10.137.0.20 10.137.0.21",
	"/qubes-firewall/10.137.0.20":        "",
	"/qubes-firewall/10.137.0.20/0000":   "action=accept proto=tcp dstports=443-443",
	"/qubes-firewall/10.137.0.20/policy": "drop",
	"/empty":                             "",
}

func TestConnectSyncsDatabase(t *testing.T) {
	_, c := pair(t, proxyVMEntries, Options{})
	var want []Entry
	for _, k := range sortedKeys(proxyVMEntries) {
		want = append(want, Entry{k, proxyVMEntries[k]})
	}
	if d := cmp.Diff(want, c.Multiread("")); d != "" {
		t.Errorf("Multiread(\"\") (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"/qubes-firewall/10.137.0.20/0000", "/qubes-firewall/10.137.0.20/policy"}, c.List("/qubes-firewall/10.137.0.20/")); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}
	if v, ok := c.Read("/qubes-ip"); !ok || v != "10.137.0.6" {
		t.Errorf("Read(/qubes-ip) = %q, %v", v, ok)
	}
	if v, ok := c.Read("/empty"); !ok || v != "" {
		t.Errorf("Read(/empty) = %q, %v; want present and empty", v, ok)
	}
	if _, ok := c.Read("/missing"); ok {
		t.Error("Read(/missing) found something")
	}
}

func sortedKeys(m map[string]string) []string {
	s := newStore(0)
	for k, v := range m {
		s.m[k] = v
	}
	return s.keysLocked("")
}

func collect(t *testing.T, w *Watcher, n int) []Event {
	t.Helper()
	var got []Event
	for len(got) < n {
		select {
		case e, ok := <-w.C:
			if !ok {
				t.Fatalf("watch closed after %d of %d events: %v", len(got), n, got)
			}
			got = append(got, e)
		case <-time.After(testTimeout):
			t.Fatalf("got %d of %d events: %v", len(got), n, got)
		}
	}
	return got
}

func TestServerPushesReachWatchers(t *testing.T) {
	ctx := testCtx(t)
	srv, c := pair(t, proxyVMEntries, Options{})
	fw, err := c.Watch("/qubes-firewall/")
	if err != nil {
		t.Fatal(err)
	}
	ip, err := c.Watch("/qubes-ip")
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error { return srv.Write(ctx, "/qubes-firewall/10.137.0.21/0000", "action=drop") },
		func() error { return srv.Write(ctx, "/qubes-firewall/10.137.0.21", "") },
		func() error { return srv.Write(ctx, "/qubes-ip", "10.137.0.7") },
		func() error { return srv.Write(ctx, "/qubes-ipv6", "fd09::1") },
		func() error { return srv.Rm(ctx, "/qubes-firewall/10.137.0.20/") },
		func() error { return srv.Rm(ctx, "/qubes-ip") },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	wantFW := []Event{
		{Path: "/qubes-firewall/10.137.0.21/0000", Value: "action=drop"},
		{Path: "/qubes-firewall/10.137.0.21", Value: ""},
		{Path: "/qubes-firewall/10.137.0.20/0000", Removed: true},
		{Path: "/qubes-firewall/10.137.0.20/policy", Removed: true},
	}
	if d := cmp.Diff(wantFW, collect(t, fw, len(wantFW))); d != "" {
		t.Errorf("firewall events (-want +got):\n%s", d)
	}
	wantIP := []Event{{Path: "/qubes-ip", Value: "10.137.0.7"}, {Path: "/qubes-ip", Removed: true}}
	if d := cmp.Diff(wantIP, collect(t, ip, len(wantIP))); d != "" {
		t.Errorf("/qubes-ip events (-want +got):\n%s", d)
	}
	// Server.Write returns after the VM acknowledged, so the copy is current.
	if d := cmp.Diff(srv.Multiread(""), c.Multiread("")); d != "" {
		t.Errorf("copy differs from dom0 (-dom0 +vm):\n%s", d)
	}
	ip.Close()
	if _, ok := <-ip.C; ok {
		t.Error("watch channel still open after Close")
	}
}

func TestClientWriteAndRm(t *testing.T) {
	ctx := testCtx(t)
	srv, c := pair(t, proxyVMEntries, Options{})
	w, err := c.Watch("/")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, "/qubes-service/x", "1"); err != nil {
		t.Fatal(err)
	}
	if v, ok := srv.Read("/qubes-service/x"); !ok || v != "1" {
		t.Errorf("dom0 has %q, %v", v, ok)
	}
	if v, ok := c.Read("/qubes-service/x"); !ok || v != "1" {
		t.Errorf("copy has %q, %v", v, ok)
	}
	if err := c.Rm(ctx, "/qubes-firewall/"); err != nil {
		t.Fatal(err)
	}
	if got := srv.List("/qubes-firewall"); len(got) != 0 {
		t.Errorf("dom0 still has %v", got)
	}
	if err := c.Rm(ctx, "/qubes-firewall/"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Rm: %v, want ErrNotFound", err)
	}
	if err := c.Rm(ctx, "/nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Rm(/nothing): %v, want ErrNotFound", err)
	}
	want := []Event{
		{Path: "/qubes-service/x", Value: "1"},
		{Path: "/qubes-firewall/10.137.0.20", Removed: true},
		{Path: "/qubes-firewall/10.137.0.20/0000", Removed: true},
		{Path: "/qubes-firewall/10.137.0.20/policy", Removed: true},
	}
	if d := cmp.Diff(want, collect(t, w, len(want))); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	for _, bad := range []struct{ k, v string }{
		{"relative", "x"}, {"/dir/", "x"}, {"/a b", "x"}, {"/nul", "a\x00b"}, {"/big", strings.Repeat("a", 3072)},
	} {
		if err := c.Write(ctx, bad.k, bad.v); err == nil {
			t.Errorf("Write(%q, %.10q) succeeded", bad.k, bad.v)
		}
	}
	if c.Err() != nil {
		t.Errorf("refused writes broke the connection: %v", c.Err())
	}
}

func TestConcurrentWritersConverge(t *testing.T) {
	ctx := testCtx(t)
	srv, c := pair(t, nil, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := c.Write(ctx, fmt.Sprintf("/vm/%d/%d", g, i), fmt.Sprint(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := srv.Write(ctx, fmt.Sprintf("/dom0/%d", g), fmt.Sprint(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(c.List("/vm/")); n != 200 {
		t.Errorf("copy has %d /vm/ entries, want 200", n)
	}
	if d := cmp.Diff(srv.Multiread(""), c.Multiread("")); d != "" {
		t.Errorf("copy differs from dom0 (-dom0 +vm):\n%s", d)
	}
}

func TestConnectHonoursContext(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go io.Copy(io.Discard, a) // a dom0 that never answers
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Connect(ctx, b, Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect = %v, want deadline exceeded", err)
	}
}

func TestClientMaxBytes(t *testing.T) {
	ctx := testCtx(t)
	srv := NewServer(Options{})
	for i := 0; i < 10; i++ {
		srv.Write(ctx, fmt.Sprintf("/k%d", i), strings.Repeat("v", 100))
	}
	a, b := net.Pipe()
	go srv.Serve(ctx, a)
	_, err := Connect(ctx, b, Options{MaxBytes: 500})
	if err == nil || !strings.Contains(err.Error(), "limit is 500") {
		t.Fatalf("Connect = %v, want the size limit error", err)
	}
}

// frame builds a message by hand for hostile-peer tests.
func frame(typ MsgType, path string, data string) []byte {
	return append(rawHeader(byte(typ), path, uint32(len(data))), data...)
}

// fakePeer plays a scripted peer on the other end of a pipe: it discards
// what the code under test sends and writes the scripted bytes.
func fakePeer(conn net.Conn, script [][]byte) {
	go io.Copy(io.Discard, conn)
	go func() {
		for _, b := range script {
			if _, err := conn.Write(b); err != nil {
				return
			}
		}
	}()
}

func TestHostileDom0DuringSync(t *testing.T) {
	tests := []struct {
		name    string
		script  [][]byte
		wantErr string
	}{
		{"wrong-type", [][]byte{frame(CmdWrite, "/a", "x")}, "got WRITE \"/a\", want RESP_MULTIREAD"},
		{"unknown-type", [][]byte{rawHeader(42, "/a", 0)}, "unknown message type 42"},
		{"relative-key", [][]byte{frame(RespMultiread, "a", "x")}, "does not start with '/'"},
		{"dir-key", [][]byte{frame(RespMultiread, "/a/", "x")}, "ends with '/'"},
		{"nul-in-data", [][]byte{frame(RespMultiread, "/a", "x\x00y")}, "NUL byte at offset 1"},
		{"data-len-over", [][]byte{rawHeader(byte(RespMultiread), "/a", 5000)}, "announces 5000 data bytes"},
		{"end-with-data", [][]byte{frame(RespMultiread, "", "x")}, "end marker carries 1 data bytes"},
		{"eof-in-header", [][]byte{rawHeader(byte(RespMultiread), "/a", 0)[:30], nil}, "unexpected EOF"},
		{"eof-in-data", [][]byte{rawHeader(byte(RespMultiread), "/a", 10), []byte("abc"), nil}, "unexpected EOF"},
		{"eof-before-end", [][]byte{frame(RespMultiread, "/a", "x"), nil}, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			script := tt.script
			if n := len(script); script[n-1] == nil {
				// nil marks "then close the stream".
				go func() {
					io.ReadFull(a, make([]byte, HeaderSize)) // the MULTIREAD
					for _, s := range script[:n-1] {
						a.Write(s)
					}
					a.Close()
				}()
			} else {
				defer a.Close()
				fakePeer(a, script)
			}
			_, err := Connect(testCtx(t), b, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Connect = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestHostileDom0AfterSync(t *testing.T) {
	end := frame(RespMultiread, "", "")
	tests := []struct {
		name    string
		script  [][]byte
		request bool // the client has a Write in flight for /mine
		wantErr string
	}{
		{"unknown-type", [][]byte{rawHeader(99, "/a", 0)}, false, "unknown message type 99"},
		{"read-from-dom0", [][]byte{frame(CmdRead, "/a", "")}, false, "unexpected READ"},
		{"multiread-after-sync", [][]byte{frame(RespMultiread, "/a", "x")}, false, "unexpected RESP_MULTIREAD"},
		{"write-nul", [][]byte{frame(CmdWrite, "/a", "\x00")}, false, "NUL byte"},
		{"write-dir", [][]byte{frame(CmdWrite, "/a/", "x")}, false, "ends with '/'"},
		{"rm-with-data", [][]byte{frame(CmdRm, "/a", "x")}, false, "carries 1 data bytes"},
		{"rm-relative", [][]byte{frame(CmdRm, "a", "")}, false, "does not start with '/'"},
		{"unsolicited-ok", [][]byte{frame(RespOK, "/a", "")}, false, "unsolicited RESP_OK"},
		{"ok-wrong-path", [][]byte{frame(RespOK, "/other", "")}, true, "for \"/other\" while waiting for the answer about \"/mine\""},
		{"ok-with-data", [][]byte{frame(RespOK, "/mine", "x")}, true, "carries 1 data bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b := net.Pipe()
			defer a.Close()
			started := make(chan struct{})
			go func() {
				var hb [HeaderSize]byte
				io.ReadFull(a, hb[:]) // the MULTIREAD
				a.Write(end)
				if tt.request {
					io.ReadFull(a, hb[:]) // the WRITE header
					var h Header
					h.UnmarshalBinary(hb[:])
					io.ReadFull(a, make([]byte, h.DataLen))
				} else {
					<-started
				}
				go io.Copy(io.Discard, a)
				for _, s := range tt.script {
					a.Write(s)
				}
			}()
			c, err := Connect(ctx, b, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var writeErr error
			if tt.request {
				writeErr = c.Write(ctx, "/mine", "v")
			} else {
				close(started)
			}
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatal("client did not notice the bad message")
			}
			if err := c.Err(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Err = %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.request && writeErr == nil {
				t.Error("Write succeeded on a broken connection")
			}
			if _, err := c.Watch("/x"); !errors.Is(err, ErrClosed) {
				t.Errorf("Watch after failure = %v, want ErrClosed", err)
			}
		})
	}
}

// A dom0 that pushes without reading the answers must be cut off, not
// buffered for without limit and not left to hang the client.
func TestFloodingDom0IsCutOff(t *testing.T) {
	ctx := testCtx(t)
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		var hb [HeaderSize]byte
		io.ReadFull(a, hb[:])
		a.Write(frame(RespMultiread, "", ""))
		for i := 0; ; i++ {
			if _, err := a.Write(frame(CmdWrite, fmt.Sprintf("/k%d", i), "v")); err != nil {
				return
			}
		}
	}()
	c, err := Connect(ctx, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("flood not detected")
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "not reading our answers") {
		t.Fatalf("Err = %v", err)
	}
}

func TestSlowWatcherGetsLost(t *testing.T) {
	ctx := testCtx(t)
	srv, c := pair(t, nil, Options{})
	w, err := c.Watch("/k/")
	if err != nil {
		t.Fatal(err)
	}
	const n = watchQueueLen + 100
	for i := 0; i < n; i++ {
		if err := srv.Write(ctx, fmt.Sprintf("/k/%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	var got []Event
	lost := false
	for len(got) == 0 || got[len(got)-1].Path != fmt.Sprintf("/k/%d", n-1) {
		e := collect(t, w, 1)[0]
		lost = lost || e.Lost
		got = append(got, e)
	}
	if !lost || len(got) >= n {
		t.Errorf("got %d events, lost=%v; want fewer than %d with a Lost marker", len(got), lost, n)
	}
}

func TestServerRejectsBadVM(t *testing.T) {
	tests := []struct {
		name    string
		script  [][]byte
		wantErr string
	}{
		{"read-is-local-only", [][]byte{frame(CmdRead, "/a", "")}, "READ \"/a\" is not valid from a VM"},
		{"list-is-local-only", [][]byte{frame(CmdList, "/", "")}, "LIST \"/\" is not valid from a VM"},
		{"watch-is-local-only", [][]byte{frame(CmdWatch, "/a", "")}, "WATCH \"/a\" is not valid from a VM"},
		{"second-multiread", [][]byte{frame(CmdMultiread, "", ""), frame(CmdMultiread, "", "")}, "second MULTIREAD"},
		{"rm-missing", [][]byte{frame(CmdRm, "/missing", "")}, "does not exist"},
		{"write-nul", [][]byte{frame(CmdWrite, "/a", "\x00")}, "NUL byte"},
		{"multiread-data", [][]byte{frame(CmdMultiread, "", "x")}, "carries 1 data bytes"},
		{"unsolicited-ok", [][]byte{frame(RespOK, "/a", "")}, "unsolicited RESP_OK"},
		{"bad-header", [][]byte{rawHeader(1, "/a\x01", 0)}, "forbidden byte 0x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			fakePeer(b, tt.script)
			err := NewServer(Options{}).Serve(testCtx(t), a)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Serve = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestServerDumpOrderAndEndMarker(t *testing.T) {
	ctx := testCtx(t)
	srv := NewServer(Options{})
	for _, k := range []string{"/a", "/b", "/c"} {
		srv.Write(ctx, k, "v"+k[1:])
	}
	a, b := net.Pipe()
	defer b.Close()
	go srv.Serve(ctx, a)
	b.Write(frame(CmdMultiread, "", ""))
	var got []byte
	want := append(append(append(frame(RespMultiread, "/c", "vc"), frame(RespMultiread, "/b", "vb")...), frame(RespMultiread, "/a", "va")...), frame(RespMultiread, "", "")...)
	got = make([]byte, len(want))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("dump bytes (-want +got):\n%s", d)
	}
	// A pushed write is answered by the VM echoing the path.
	done := make(chan error, 1)
	go func() { done <- srv.Write(ctx, "/d", "vd") }()
	push := make([]byte, HeaderSize+2)
	if _, err := io.ReadFull(b, push); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(frame(CmdWrite, "/d", "vd"), push); d != "" {
		t.Errorf("push (-want +got):\n%s", d)
	}
	b.Write(frame(RespOK, "/d", ""))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCloseOnPushStillAnswers: a VM program that closes its client as soon
// as a watch reports dom0's change (the lab's qubesdb program does) must
// still have answered that change, or dom0's write or removal fails with
// the connection closed.
func TestCloseOnPushStillAnswers(t *testing.T) {
	for i := range 50 {
		ctx := testCtx(t)
		srv, c := pair(t, proxyVMEntries, Options{})
		w, err := c.Watch("/qubes-firewall/")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			<-w.C
			c.Close()
		}()
		var op func() error
		if i%2 == 0 {
			op = func() error { return srv.Rm(ctx, "/qubes-firewall/10.137.0.20/0000") }
		} else {
			op = func() error { return srv.Write(ctx, "/qubes-firewall/10.137.0.20/0001", "action=drop") }
		}
		if err := op(); err != nil {
			t.Fatalf("round %d: dom0's change failed although the VM saw it: %v", i, err)
		}
	}
}

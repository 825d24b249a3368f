package xenstore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

// testCtx bounds every test so that a hang fails instead of stalling.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ringClient connects domain dom to srv over a simulated ring page.
func ringClient(t *testing.T, srv *xenstoretest.Server, dom xenstore.DomID) *xenstore.Client {
	c, closeFn := srv.Client(dom)
	t.Cleanup(closeFn)
	return c
}

// pipeClient connects to srv over a net.Pipe, as dom0 tools do over the socket.
func pipeClient(t *testing.T, srv *xenstoretest.Server) *xenstore.Client {
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(b, 0)
	}()
	c := xenstore.NewClient(a)
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c
}

func TestBasicOperations(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	for name, c := range map[string]*xenstore.Client{
		"ring": ringClient(t, srv, 7),
		"pipe": pipeClient(t, srv),
	} {
		t.Run(name, func(t *testing.T) {
			base := "/test/" + name
			if err := c.Write(ctx, base+"/a", "1"); err != nil {
				t.Fatal(err)
			}
			if err := c.Write(ctx, base+"/b/c", "binary\x00value"); err != nil {
				t.Fatal(err)
			}
			if err := c.Mkdir(ctx, base+"/d"); err != nil {
				t.Fatal(err)
			}
			got, err := c.Read(ctx, base+"/b/c")
			if err != nil || got != "binary\x00value" {
				t.Errorf("Read = %q, %v", got, err)
			}
			if got, err := c.Read(ctx, base+"/b"); err != nil || got != "" {
				t.Errorf("Read of created parent = %q, %v; want empty", got, err)
			}
			names, err := c.Directory(ctx, base)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"a", "b", "d"}, names); diff != "" {
				t.Errorf("Directory (-want +got):\n%s", diff)
			}
			if ok, err := c.Exists(ctx, base+"/a"); !ok || err != nil {
				t.Errorf("Exists(a) = %v, %v", ok, err)
			}
			if err := c.Rm(ctx, base+"/b"); err != nil {
				t.Fatal(err)
			}
			_, err = c.Read(ctx, base+"/b/c")
			if !errors.Is(err, syscall.ENOENT) || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Read after Rm: %v, want ENOENT", err)
			}
			var xe *xenstore.Error
			if !errors.As(err, &xe) || xe.Name != "ENOENT" {
				t.Errorf("error %#v is not a xenstore.Error ENOENT", err)
			}
			if ok, err := c.Exists(ctx, base+"/b"); ok || err != nil {
				t.Errorf("Exists(b) after Rm = %v, %v", ok, err)
			}
			if err := c.Rm(ctx, base+"/nothing"); err != nil {
				t.Errorf("Rm of missing child: %v", err)
			}
			if err := c.Rm(ctx, base+"/no/thing"); !errors.Is(err, syscall.ENOENT) {
				t.Errorf("Rm with missing parent: %v, want ENOENT", err)
			}
			perms := []xenstore.Perm{{Dom: 7, Access: xenstore.AccessNone}, {Dom: 3, Access: xenstore.AccessRead}}
			if err := c.SetPerms(ctx, base+"/a", perms); err != nil {
				t.Fatal(err)
			}
			gotPerms, err := c.GetPerms(ctx, base+"/a")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(perms, gotPerms); diff != "" {
				t.Errorf("GetPerms (-want +got):\n%s", diff)
			}
			p, err := c.GetDomainPath(ctx, 42)
			if err != nil || p != "/local/domain/42" {
				t.Errorf("GetDomainPath = %q, %v", p, err)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 5)
	if err := c.Write(ctx, "device/vif/0/state", "1"); err != nil {
		t.Fatal(err)
	}
	if v, ok := srv.Get("/local/domain/5/device/vif/0/state"); !ok || v != "1" {
		t.Errorf("relative write landed as %q, %v", v, ok)
	}
	if v, err := c.Read(ctx, "/local/domain/5/device/vif/0/state"); err != nil || v != "1" {
		t.Errorf("absolute read = %q, %v", v, err)
	}
}

func TestInvalidRequestsRefusedLocally(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 1)
	tests := []struct {
		name string
		op   func() error
		want syscall.Errno
	}{
		{"empty path", func() error { _, err := c.Read(ctx, ""); return err }, syscall.EINVAL},
		{"bad char", func() error { _, err := c.Read(ctx, "/a b"); return err }, syscall.EINVAL},
		{"double slash", func() error { return c.Write(ctx, "/a//b", "") }, syscall.EINVAL},
		{"trailing slash", func() error { return c.Mkdir(ctx, "/a/") }, syscall.EINVAL},
		{"long path", func() error { return c.Rm(ctx, "/"+strings.Repeat("x", 3072)) }, syscall.EINVAL},
		{"long relative", func() error { return c.Rm(ctx, strings.Repeat("x", 2049)) }, syscall.EINVAL},
		{"value too big", func() error { return c.Write(ctx, "/a", strings.Repeat("v", 4094)) }, syscall.E2BIG},
		{"no perms", func() error { return c.SetPerms(ctx, "/a", nil) }, syscall.EINVAL},
		{"bad access", func() error { return c.SetPerms(ctx, "/a", []xenstore.Perm{{Access: 'x'}}) }, syscall.EINVAL},
		{"NUL in token", func() error { _, err := c.Watch(ctx, "/a", "t\x00"); return err }, syscall.EINVAL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	// The largest write that fits is accepted.
	if err := c.Write(ctx, "/a", strings.Repeat("v", 4096-3)); err != nil {
		t.Errorf("write of exactly PayloadMax: %v", err)
	}
	if c.Err() != nil {
		t.Errorf("client failed: %v", c.Err())
	}
}

// nextEvent waits for one event or fails the test.
func nextEvent(t *testing.T, w *xenstore.Watch) xenstore.Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	return xenstore.Event{}
}

// noEvent checks that no event is pending.
func noEvent(t *testing.T, w *xenstore.Watch) {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if ok {
			t.Errorf("unexpected event %+v", ev)
		}
	case <-time.After(50 * time.Millisecond):
	}
}

func TestWatch(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 3)
	w, err := c.Watch(ctx, "/backend/vif", "tok")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(xenstore.Event{Path: "/backend/vif", Token: "tok"}, nextEvent(t, w)); diff != "" {
		t.Errorf("registration event (-want +got):\n%s", diff)
	}
	noEvent(t, w)
	srv.Set("/backend/vif/3/0/state", "2")
	if diff := cmp.Diff(xenstore.Event{Path: "/backend/vif/3/0/state", Token: "tok"}, nextEvent(t, w)); diff != "" {
		t.Errorf("change event (-want +got):\n%s", diff)
	}
	srv.Set("/backend/vbd/x", "unrelated")
	noEvent(t, w)

	// A relative watch reports relative paths.
	rw, err := c.Watch(ctx, "device", "")
	if err != nil {
		t.Fatal(err)
	}
	if rw.Token() == "" || rw.Token() == "tok" {
		t.Errorf("generated token %q", rw.Token())
	}
	if ev := nextEvent(t, rw); ev.Path != "device" {
		t.Errorf("relative registration event %+v", ev)
	}
	if err := c.Write(ctx, "device/vif/0/state", "4"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, rw); ev.Path != "device/vif/0/state" || ev.Token != rw.Token() {
		t.Errorf("relative change event %+v", ev)
	}

	// Duplicate token refused locally.
	if _, err := c.Watch(ctx, "/other", "tok"); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("duplicate token: %v", err)
	}

	if err := c.Unwatch(ctx, w); err != nil {
		t.Fatal(err)
	}
	srv.Set("/backend/vif/3/0/state", "4")
	select {
	case ev, ok := <-w.Events():
		if ok {
			t.Errorf("event %+v after Unwatch", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("channel not closed by Unwatch")
	}
	// Removing a parent fires the watch with the watched path.
	if err := c.Rm(ctx, "device"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, rw); ev.Path != "device" {
		t.Errorf("removal event %+v", ev)
	}
}

func TestWatchSlowReceiverCoalesces(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 3)
	w, err := c.Watch(ctx, "/flood", "t")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w) // the registration event has the watched path too
	// Nobody reads while the server sends far more events than the
	// queue holds; the client must keep working (replies still flow).
	for i := 0; i < 600; i++ {
		srv.Set(fmt.Sprintf("/flood/%d", i), "x")
	}
	if _, err := c.Read(ctx, "/flood/599"); err != nil {
		t.Fatal(err)
	}
	// Drain: what arrives is bounded and ends with the collapsed event.
	var got []xenstore.Event
	for {
		select {
		case ev := <-w.Events():
			got = append(got, ev)
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if len(got) == 0 || len(got) > 257 {
		t.Fatalf("%d events delivered", len(got))
	}
	if !slices.Contains(got, xenstore.Event{Path: "/flood", Token: "t"}) {
		t.Errorf("no collapsed event for the watched path among %d", len(got))
	}
}

func TestTransaction(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 2)
	other := ringClient(t, srv, 0)
	if err := c.Write(ctx, "/counter", "0"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, "/counter", "")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w)

	attempts := 0
	err = c.Transaction(ctx, func(tx *xenstore.Tx) error {
		attempts++
		v, err := tx.Read(ctx, "/counter")
		if err != nil {
			return err
		}
		if attempts == 1 {
			// Someone else commits in between: our commit must conflict.
			if err := other.Write(ctx, "/counter", "100"); err != nil {
				return err
			}
		}
		if err := tx.Write(ctx, "/counter", v+"+1"); err != nil {
			return err
		}
		// Inside the transaction we see our own write, outside not yet.
		if got, err := tx.Read(ctx, "/counter"); err != nil || got != v+"+1" {
			return fmt.Errorf("read inside tx = %q, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 2 {
		t.Errorf("function ran %d times, want 2", attempts)
	}
	if v, _ := srv.Get("/counter"); v != "100+1" {
		t.Errorf("counter = %q, want 100+1", v)
	}
	// Events: the other client's write, then our commit.
	if ev := nextEvent(t, w); ev.Path != "/counter" {
		t.Errorf("event %+v", ev)
	}

	// An error from fn aborts: nothing is written.
	boom := errors.New("boom")
	err = c.Transaction(ctx, func(tx *xenstore.Tx) error {
		if err := tx.Write(ctx, "/aborted", "x"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Transaction = %v, want boom", err)
	}
	if _, ok := srv.Get("/aborted"); ok {
		t.Error("aborted transaction's write is visible")
	}

	// Permanent conflicts give up after MaxTransactionAttempts.
	srv.ForceConflicts(1 << 20)
	before := srv.Commits()
	err = c.Transaction(ctx, func(tx *xenstore.Tx) error { return tx.Write(ctx, "/x", "y") })
	if !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("endless conflicts: %v", err)
	}
	if n := srv.Commits() - before; n != xenstore.MaxTransactionAttempts {
		t.Errorf("%d commits attempted, want %d", n, xenstore.MaxTransactionAttempts)
	}
	srv.ForceConflicts(0)

	// Manual Begin/Commit and use after end.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tx.ID() == 0 {
		t.Error("transaction id 0")
	}
	if err := tx.Write(ctx, "/manual", "1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Get("/manual"); ok {
		t.Error("uncommitted write visible")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := srv.Get("/manual"); v != "1" {
		t.Errorf("committed value %q", v)
	}
	if err := tx.Write(ctx, "/manual", "2"); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("write after commit: %v", err)
	}
	if err := tx.Abort(ctx); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("abort after commit: %v", err)
	}
}

func TestConcurrentClients(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 9)
	const workers, ops = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < ops; i++ {
				p := fmt.Sprintf("/conc/%d/%d", g, i)
				// Long values make messages span the 1 KiB ring several times.
				v := strings.Repeat(fmt.Sprintf("%d.%d;", g, i), 150)
				if err := c.Write(ctx, p, v); err != nil {
					errs <- err
					return
				}
				got, err := c.Read(ctx, p)
				if err != nil || got != v {
					errs <- fmt.Errorf("read %s = %d bytes, %v", p, len(got), err)
					return
				}
			}
		}()
	}
	// A counter incremented by concurrent transactions must not lose updates.
	if err := c.Write(ctx, "/conc/n", "0"); err != nil {
		t.Fatal(err)
	}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				err := c.Transaction(ctx, func(tx *xenstore.Tx) error {
					v, err := tx.Read(ctx, "/conc/n")
					if err != nil {
						return err
					}
					var n int
					fmt.Sscan(v, &n)
					return tx.Write(ctx, "/conc/n", fmt.Sprint(n+1))
				})
				if err != nil {
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
	if v, _ := srv.Get("/conc/n"); v != "40" {
		t.Errorf("counter = %s, want 40", v)
	}
}

func TestLargeDirectory(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 1)
	var want []string
	for i := 0; i < 500; i++ {
		name := fmt.Sprintf("entry-with-a-long-name-%04d", i)
		want = append(want, name)
		srv.Set("/big/"+name, "")
	}
	got, err := c.Directory(ctx, "/big")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Directory (-want +got):\n%s", diff)
	}
	if err := c.Mkdir(ctx, "/empty"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Directory(ctx, "/empty"); err != nil || len(got) != 0 {
		t.Errorf("empty Directory = %q, %v", got, err)
	}
}

func TestCloseUnblocks(t *testing.T) {
	srv := xenstoretest.NewServer()
	r := srv.NewRing(1)
	defer r.Close()
	c := xenstore.NewClient(xenstore.NewRingConn(r.Page, r.GuestNotify, r.GuestWait))
	ctx := testCtx(t)
	w, err := c.Watch(ctx, "/w", "")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w)
	// Stop the server so requests hang, then close the client.
	r.Close()
	done := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			_, err := c.Read(ctx, "/w")
			done <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	c.Close()
	for i := 0; i < 4; i++ {
		select {
		case err := <-done:
			if !errors.Is(err, xenstore.ErrClosed) {
				t.Errorf("blocked Read returned %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock a caller")
		}
	}
	if _, ok := <-w.Events(); ok {
		t.Error("watch channel open after Close")
	}
	if _, err := c.Read(ctx, "/w"); !errors.Is(err, xenstore.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestContextCancelled(t *testing.T) {
	srv := xenstoretest.NewServer()
	r := srv.NewRing(1)
	c := xenstore.NewClient(xenstore.NewRingConn(r.Page, r.GuestNotify, r.GuestWait))
	defer c.Close()
	r.Close() // the server goes silent
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := c.Read(ctx, "/x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Read = %v, want deadline exceeded", err)
	}
	if c.Err() != nil {
		t.Errorf("a cancelled call broke the client: %v", c.Err())
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s: condition never held", what)
}

func TestCancelledTransactionIsAborted(t *testing.T) {
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 1)
	ctx, cancel := context.WithCancel(testCtx(t))
	err := c.Transaction(ctx, func(tx *xenstore.Tx) error {
		if err := tx.Write(ctx, "/t", "1"); err != nil {
			return err
		}
		if n := srv.OpenTransactions(); n != 1 {
			t.Errorf("%d open transactions inside fn", n)
		}
		cancel()
		_, err := tx.Read(ctx, "/t")
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Transaction = %v, want Canceled", err)
	}
	eventually(t, "transaction aborted", func() bool { return srv.OpenTransactions() == 0 })
	if _, ok := srv.Get("/t"); ok {
		t.Error("cancelled transaction committed")
	}
}

func TestManualCommitWithDeadContextNotLost(t *testing.T) {
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 1)
	ctx := testCtx(t)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if err := tx.Commit(dead); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit(dead) = %v", err)
	}
	// Not sent, so the transaction is still open and can be ended.
	if err := tx.Abort(ctx); err != nil {
		t.Errorf("Abort after unsent Commit: %v", err)
	}
	if n := srv.OpenTransactions(); n != 0 {
		t.Errorf("%d open transactions", n)
	}
}

func TestDialUnixSocket(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	sock := t.TempDir() + "/socket"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no unix sockets: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.Serve(conn, 0)
		}
	}()
	c, err := xenstore.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(ctx, "/tool/key", "v"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Read(ctx, "/tool/key"); err != nil || v != "v" {
		t.Errorf("Read = %q, %v", v, err)
	}
	if _, err := xenstore.Dial(ctx, t.TempDir()+"/none"); err == nil {
		t.Error("Dial of a missing socket succeeded")
	}
}

func TestSpecialWatch(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	c := ringClient(t, srv, 0)
	w, err := c.Watch(ctx, "@releaseDomain", "rel")
	if err != nil {
		t.Fatal(err)
	}
	if w.Path() != "@releaseDomain" || w.Token() != "rel" {
		t.Errorf("watch %q %q", w.Path(), w.Token())
	}
	if ev := nextEvent(t, w); ev.Path != "@releaseDomain" {
		t.Errorf("registration event %+v", ev)
	}
	srv.Set("/local/domain/3/x", "1")
	noEvent(t, w)
	srv.FireSpecial("@releaseDomain")
	if ev := nextEvent(t, w); ev != (xenstore.Event{Path: "@releaseDomain", Token: "rel"}) {
		t.Errorf("event %+v", ev)
	}
	if n := srv.Watches(); n != 1 {
		t.Errorf("server has %d watches", n)
	}
	if err := c.Unwatch(ctx, w); err != nil {
		t.Fatal(err)
	}
	if n := srv.Watches(); n != 0 {
		t.Errorf("server has %d watches after Unwatch", n)
	}
}

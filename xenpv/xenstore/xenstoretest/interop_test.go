package xenstoretest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

// TestInteropWithLibxenstore runs Xen's own C command-line tools
// (xenstore-utils, built on libxenstore) against the fake over a unix
// socket, next to our Go client. It checks our reading of the wire
// protocol against the reference implementation: transactions (the
// tools wrap writes in one and retry on EAGAIN), DIRECTORY and the
// DIRECTORY_PART fallback, permissions, watches. The tools come from
// Debian's xenstore-utils, which scripts/setup installs; without them the
// test fails rather than skips.
func TestInteropWithLibxenstore(t *testing.T) {
	for _, tool := range []string{"xenstore-write", "xenstore-read", "xenstore-list", "xenstore-rm", "xenstore-chmod", "xenstore-ls", "xenstore-watch"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: run scripts/setup (Debian package xenstore-utils)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := xenstoretest.NewServer()
	sock := t.TempDir() + "/socket"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listening on a unix socket: %v", err)
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
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	c, err := xenstore.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// C writes, Go reads; Go writes, C reads.
	run("xenstore-write", "/interop/a", "from C", "/interop/b/c", "2")
	if v, err := c.Read(ctx, "/interop/a"); err != nil || v != "from C" {
		t.Errorf("Go read of C write = %q, %v", v, err)
	}
	if err := c.Write(ctx, "/interop/go", "from Go"); err != nil {
		t.Fatal(err)
	}
	if out := run("xenstore-read", "/interop/go"); out != "from Go\n" {
		t.Errorf("C read of Go write = %q", out)
	}
	if out := run("xenstore-list", "/interop"); out != "a\nb\ngo\n" {
		t.Errorf("xenstore-list = %q", out)
	}

	// Permissions set by C, read by Go.
	run("xenstore-chmod", "/interop/a", "n5", "r7")
	perms, err := c.GetPerms(ctx, "/interop/a")
	want := []xenstore.Perm{{Dom: 5, Access: xenstore.AccessNone}, {Dom: 7, Access: xenstore.AccessRead}}
	if err != nil || !slices.Equal(perms, want) {
		t.Errorf("perms = %v, %v", perms, err)
	}

	// A directory too long for one reply: libxenstore falls back to
	// DIRECTORY_PART exactly as our client does.
	var names []string
	for i := 0; i < 400; i++ {
		names = append(names, fmt.Sprintf("a-rather-long-child-name-%03d", i))
		srv.Set("/interop/big/"+names[i], "")
	}
	if out := run("xenstore-list", "/interop/big"); out != strings.Join(names, "\n")+"\n" {
		t.Errorf("xenstore-list of a large directory: %d bytes, want %d", len(out), len(strings.Join(names, "\n"))+1)
	}
	got, err := c.Directory(ctx, "/interop/big")
	if err != nil || !slices.Equal(got, names) {
		t.Errorf("Go Directory of a large directory: %d names, %v", len(got), err)
	}

	// A C watcher sees a Go write (first the registration event).
	cmd := exec.CommandContext(ctx, "xenstore-watch", "-n", "2", "/interop/w")
	cmd.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
	var buf strings.Builder
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for srv.Watches() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Write(ctx, "/interop/w/x", "1"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "/interop/w\n/interop/w/x\n" {
		t.Errorf("xenstore-watch saw %q", buf.String())
	}

	run("xenstore-rm", "/interop/b")
	if ok, err := c.Exists(ctx, "/interop/b/c"); ok || err != nil {
		t.Errorf("after C rm: exists=%v, %v", ok, err)
	}
}

// Package xen_test runs unikgo images as PVH guests on real Xen (the lab in
// qemu-tests/xenlab: Xen 4.17 and a Linux dom0 under QEMU) and checks what
// dom0 sees: the guest's PV console log and its shutdown reason.
//
// One lab boot is shared by all tests. The tests need the lab's
// dependencies (qemu-tests/xenlab/install-deps.sh, run by scripts/setup);
// they fail, not skip, without them.
package xen_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/qemu-tests/xenlab"
)

var (
	labOnce sync.Once
	shared  *xenlab.Lab
	labErr  error
	imgDir  string
	labMu   sync.Mutex // one guest at a time: the lab has one vCPU
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "unikgo-xen-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	imgDir = d
	code := m.Run()
	if shared != nil {
		shared.Close()
		if code == 0 {
			shared.RemoveDir()
		} else {
			fmt.Fprintln(os.Stderr, "xen: lab logs kept in", shared.Dir())
		}
	}
	os.RemoveAll(d)
	os.Exit(code)
}

func lab(t *testing.T) *xenlab.Lab {
	t.Helper()
	labOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		shared, labErr = xenlab.Start(ctx, xenlab.Options{Progress: os.Stderr, Timeout: 40 * time.Minute})
	})
	if labErr != nil {
		t.Fatalf("starting the Xen lab: %v (install its dependencies with scripts/setup)", labErr)
	}
	return shared
}

func image(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(imgDir, filepath.Base(pkg)+".img")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := builder.Build(ctx, builder.BuildOptions{Package: pkg, Dir: "../..", Output: out}); err != nil {
		t.Fatalf("building %s: %v", pkg, err)
	}
	return out
}

// runGuest boots img as a PVH guest and waits for it to shut down.
func runGuest(t *testing.T, name, img, cmdline string, memMiB int, timeout time.Duration) (string, xenlab.ShutdownReason) {
	t.Helper()
	l := lab(t)
	labMu.Lock()
	defer labMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	g, err := l.Create(ctx, xenlab.GuestConfig{Name: name, Type: xenlab.PVH, Kernel: img, Cmdline: cmdline, MemoryMiB: memMiB})
	if err != nil {
		t.Fatalf("creating guest %s: %v", name, err)
	}
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		g.Destroy(context.Background())
		t.Fatalf("guest %s did not shut down: %v\nconsole:\n%s", name, err, g.Console())
	}
	return g.Console(), reason
}

func expect(t *testing.T, console string, reason, want xenlab.ShutdownReason, lines ...string) {
	t.Helper()
	if reason != want {
		t.Errorf("shutdown reason %v, want %v", reason, want)
	}
	for _, l := range lines {
		if !strings.Contains(console, l) {
			t.Errorf("PV console lacks %q", l)
		}
	}
	if t.Failed() {
		t.Logf("PV console:\n%s", console)
	}
}

func TestHelloPVH(t *testing.T) {
	out, reason := runGuest(t, "hello", image(t, "./examples/hello"), "hello a b", 64, 3*time.Minute)
	expect(t, out, reason, xenlab.Poweroff,
		"unikgo: 64 MiB, 1 vCPU, xen, kernel ready in", "Hello from unikgo!\nargs: [a b]\n", "unikgo: exit status 0\n")
}

// A non-zero exit status is printed and ends the domain with reason crash,
// so xl's on_crash policy applies.
func TestExitStatusPVH(t *testing.T) {
	out, reason := runGuest(t, "hello3", image(t, "./examples/hello"), "unikgo.quiet hello 3", 64, 3*time.Minute)
	expect(t, out, reason, xenlab.Crash, "Hello from unikgo!", "unikgo: exit status 3\n")
}

// A nil dereference on Xen is Go's usual panic: page faults (whose CR2 the
// nested setup loses, see kernel/insn) still become SIGSEGV correctly.
func TestNilDereferencePVH(t *testing.T) {
	out, reason := runGuest(t, "nilderef", image(t, "./qemu-tests/boot/testdata/nilderef"), "nilderef", 64, 3*time.Minute)
	expect(t, out, reason, xenlab.Crash,
		"panic: runtime error: invalid memory address or nil pointer dereference", "[signal SIGSEGV", "unikgo: exit status 2\n")
}

func TestStressPVH(t *testing.T) {
	out, reason := runGuest(t, "stress", image(t, "./qemu-tests/boot/testdata/stress"), "stress", 128, 15*time.Minute)
	expect(t, out, reason, xenlab.Poweroff, "stress: 10000 goroutines ok", "stress: ok in", "unikgo: exit status 0\n")
}

package xenlab

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// qemuProcsUsing lists running processes whose command line mentions dir (every lab's
// QEMU names its work directory in -chardev and -fsdev).
func qemuProcsUsing(dir string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("qemu-system")) {
			continue
		}
		if bytes.Contains(cmdline, []byte(dir)) {
			found = append(found, e.Name())
		}
	}
	return found
}

// TestBootDeadlineKillsQEMU: a dom0 that is not ready in time is killed, no QEMU is
// left behind and Xen's console log stays for diagnosis.
func TestBootDeadlineKillsQEMU(t *testing.T) {
	dir := t.TempDir()
	// Build or find the dom0 first: only the boot is under test, not a cold build.
	if _, err := EnsureArtifacts(context.Background(), BuildOptions{Progress: os.Stderr}); err != nil {
		t.Fatalf("%v (install the lab's dependencies with qemu-tests/xenlab/install-deps.sh)", err)
	}
	start := time.Now()
	l, err := Start(context.Background(), Options{Dir: dir, BootTimeout: 3 * time.Second})
	if err == nil {
		l.Close()
		t.Fatal("Start succeeded with a 3s boot deadline; want a timeout")
	}
	if !strings.Contains(err.Error(), "not ready within 3s") {
		t.Fatalf("Start: %v; want a boot deadline error", err)
	}
	if took := time.Since(start); took > 3*time.Second+shutdownGrace+30*time.Second {
		t.Errorf("Start took %s to give up", took)
	}
	if p := qemuProcsUsing(dir); len(p) != 0 {
		t.Errorf("QEMU processes left behind: %v", p)
	}
	if log := readText(filepath.Join(dir, xenLogName)); !strings.Contains(log, "Xen version") {
		t.Errorf("Xen's console log was not kept (%d bytes)", len(log))
	}
}

// TestLabDeadlineKillsQEMU: the lab's hard deadline kills QEMU whatever it is doing.
func TestLabDeadlineKillsQEMU(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureArtifacts(context.Background(), BuildOptions{Progress: os.Stderr}); err != nil {
		t.Fatalf("%v (install the lab's dependencies with qemu-tests/xenlab/install-deps.sh)", err)
	}
	start := time.Now()
	l, err := Start(context.Background(), Options{Dir: dir, Timeout: 4 * time.Second})
	if err == nil {
		l.Close()
		t.Fatal("Start succeeded within a 4s lab deadline; want QEMU killed")
	}
	if !strings.Contains(err.Error(), "lab deadline 4s reached") {
		t.Fatalf("Start: %v; want QEMU killed at the deadline", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("deadline 4s, but Start returned after %s", took)
	}
	if p := qemuProcsUsing(dir); len(p) != 0 {
		t.Errorf("QEMU processes left behind: %v", p)
	}
	if log := readText(filepath.Join(dir, xenLogName)); !strings.Contains(log, "Xen version") {
		t.Errorf("Xen's console log was not kept (%d bytes)", len(log))
	}
}

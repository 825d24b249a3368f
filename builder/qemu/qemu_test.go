package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/builder/pvhnote"
)

func TestArgs(t *testing.T) {
	base := []string{
		"-machine", "pc", "-accel", "tcg", "-cpu", "max", "-m", "128M", "-smp", "1",
		"-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", "img", "-append", "prog a",
	}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"defaults", Config{Image: "img", Cmdline: "prog a"}, base},
		{"memory, cpus, kvm", Config{Image: "img", Cmdline: "prog a", Memory: "1G", CPUs: 4, Accel: KVM},
			[]string{
				"-machine", "pc", "-accel", "kvm", "-cpu", "max", "-m", "1G", "-smp", "4",
				"-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
				"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
				"-kernel", "img", "-append", "prog a",
			}},
		{"instruction clock", Config{Image: "img", Cmdline: "prog a", InstructionClock: true},
			[]string{
				"-machine", "pc", "-accel", "tcg", "-cpu", "max,-x2apic", "-m", "128M", "-smp", "1",
				"-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
				"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
				"-kernel", "img", "-append", "prog a", "-icount", "shift=0",
			}},
		{"user net", Config{Image: "img", Cmdline: "prog a", Net: "user"},
			with("-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0")},
		{"user net with hostfwd", Config{Image: "img", Cmdline: "prog a", Net: "user,hostfwd=tcp::8080-:80"},
			with("-netdev", "user,id=net0,hostfwd=tcp::8080-:80", "-device", "virtio-net-pci,netdev=net0")},
		{"two disks, one with a comma", Config{Image: "img", Cmdline: "prog a", Disks: []string{"a.img", "b,c.img"}},
			with("-drive", "if=none,id=disk0,format=raw,file=a.img", "-device", "virtio-blk-pci,drive=disk0",
				"-drive", "if=none,id=disk1,format=raw,file=b,,c.img", "-device", "virtio-blk-pci,drive=disk1")},
		{"a disk and a read-only one", Config{Image: "img", Cmdline: "prog a", Disks: []string{"a.img"}, ReadOnlyDisks: []string{"r.img"}},
			with("-drive", "if=none,id=disk0,format=raw,file=a.img", "-device", "virtio-blk-pci,drive=disk0",
				"-drive", "if=none,id=disk1,format=raw,file=r.img,readonly=on", "-device", "virtio-blk-pci,drive=disk1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.Args()
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArgsRefuses(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Image: "img", Net: "tap,ifname=x"},
		{Image: "img", CPUs: -1},
		{Image: "img", Disks: []string{""}},
		{Image: "img", ReadOnlyDisks: []string{""}},
		{Image: "img", Accel: KVM, InstructionClock: true},
	} {
		if _, err := cfg.Args(); err == nil {
			t.Errorf("Args(%+v) succeeded, want an error", cfg)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		code    int
		qemuErr string
		want    Exit
		wantErr string
	}{
		{0, "", Exit{PoweredOff: true}, ""},
		{1, "", Exit{Status: 0}, ""},
		{15, "", Exit{Status: 7}, ""},
		{251, "", Exit{Status: 125}, ""},
		{1, "qemu-system-x86_64: -m bogus: Parameter 'size' expects a non-negative number", Exit{}, "qemu failed"},
		{-1, "", Exit{}, "signal"},
		{2, "", Exit{}, "not a guest status"},
	}
	for _, tt := range tests {
		got, err := decode(tt.code, tt.qemuErr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decode(%d, %q) error = %v, want %q", tt.code, tt.qemuErr, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("decode(%d): %v", tt.code, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("decode(%d) (-want +got):\n%s", tt.code, diff)
		}
	}
}

func TestStderrWatch(t *testing.T) {
	var fwd bytes.Buffer
	w := &stderrWatch{w: &fwd}
	in := "qemu-system-x86_64: warning: host doesn't support requested feature\nqemu-system-x86_64: could not load kernel 'x'\nmore"
	for _, chunk := range []string{in[:20], in[20:70], in[70:]} {
		w.Write([]byte(chunk))
	}
	if got, want := w.failure(), "qemu-system-x86_64: could not load kernel 'x'"; got != want {
		t.Errorf("failure = %q, want %q", got, want)
	}
	if fwd.String() != in {
		t.Errorf("forwarded %q, want %q", fwd.String(), in)
	}

	// After unikbuild stops QEMU, QEMU's own notice about it is dropped.
	fwd.Reset()
	w = &stderrWatch{w: &fwd}
	w.kill()
	w.Write([]byte("qemu-system-x86_64: terminating on signal 15 from pid 1\nother\n"))
	if fwd.String() != "other\n" {
		t.Errorf("after kill forwarded %q, want only %q", fwd.String(), "other\n")
	}
}

// Guest programs for the boot tests, in instructions that mean the same
// in 32- and 64-bit mode.
var (
	hangCode = []byte{0xfa, 0xf4, 0xeb, 0xfc} // cli; hlt; jmp back
	// tripleFaultCode loads an empty IDT from the stack QEMU's option ROM
	// leaves, then executes ud2: #UD, #GP, #DF, triple fault.
	tripleFaultCode = []byte{
		0x6a, 0x00, // push 0
		0x6a, 0x00, // push 0
		0x0f, 0x01, 0x1c, 0x24, // lidt [esp]
		0x0f, 0x0b, // ud2
	}
)

// writeImage writes a minimal guest to a temporary file.
func writeImage(t *testing.T, img []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "guest")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func needQEMU(t *testing.T) {
	t.Helper()
	if _, err := LookPath(""); err != nil {
		t.Fatalf("%v (run builder/install-deps.sh)", err)
	}
}

func TestRunGuests(t *testing.T) {
	needQEMU(t)
	tests := []struct {
		name    string
		image   []byte
		timeout time.Duration
		memory  string
		want    Exit
		wantErr string
	}{
		{"status 7", ProbeImage(), 30 * time.Second, "", Exit{Status: 7}, ""},
		{"triple fault", pvhnote.Minimal(tripleFaultCode, probeLoad), 30 * time.Second, "", Exit{PoweredOff: true}, ""},
		{"hang", pvhnote.Minimal(hangCode, probeLoad), 2 * time.Second, "", Exit{}, "still running after 2s"},
		{"QEMU refuses", ProbeImage(), 30 * time.Second, "bogus", Exit{}, "qemu failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := Run(context.Background(), Config{
				Image: writeImage(t, tt.image), Memory: tt.memory, Timeout: tt.timeout, Stderr: &stderr,
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run error = %v, want %q (stderr %q)", err, tt.wantErr, stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v (stderr %q)", err, stderr.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Run (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunWithoutQEMU(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Run(context.Background(), Config{Image: "img"})
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), DebianPackage) {
		t.Errorf("Run = %v, want ErrNotInstalled naming %s", err, DebianPackage)
	}
}

// fakeQEMU writes a script that answers --version and otherwise exits with
// code, standing in for QEMU in the accelerator tests.
func fakeQEMU(t *testing.T, code string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-qemu")
	script := "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'QEMU emulator version 0.0-test'; exit 0; }\nexit " + code + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChooseAccel(t *testing.T) {
	ctx := context.Background()
	saved := kvmDevice
	t.Cleanup(func() { kvmDevice = saved })

	kvmDevice = filepath.Join(t.TempDir(), "no-kvm")
	if got := ChooseAccel(ctx, fakeQEMU(t, "15"), t.TempDir()); got.Accel != TCG || !strings.Contains(got.Reason, "no usable") {
		t.Errorf("without /dev/kvm: %v, want tcg (no usable ...)", got)
	}

	// /dev/null opens read-write like a KVM device would; the fake QEMU
	// decides what the probe sees.
	kvmDevice = os.DevNull
	cache := t.TempDir()
	if got := ChooseAccel(ctx, fakeQEMU(t, "1"), cache); got.Accel != TCG || !strings.Contains(got.Reason, "misbehaved") {
		t.Errorf("probe exits with status 0: %v, want tcg", got)
	}
	cache = t.TempDir()
	if got := ChooseAccel(ctx, fakeQEMU(t, "15"), cache); got.Accel != KVM {
		t.Errorf("probe exits with status 7: %v, want kvm", got)
	}
	// The answer is cached per kernel and QEMU version: a broken QEMU with
	// the same version string is not probed again.
	if got := ChooseAccel(ctx, fakeQEMU(t, "1"), cache); got.Accel != KVM || got.Reason != "cached probe result" {
		t.Errorf("second call: %v, want the cached kvm", got)
	}
	if got := ChooseAccel(ctx, fakeQEMU(t, "1"), ""); got.Accel != TCG {
		t.Errorf("without a cache: %v, want a fresh probe (tcg)", got)
	}
}

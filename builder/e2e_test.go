package builder

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder/qemu"
)

// TestStubBoots builds the stub and boots it with the QEMU runner: the
// image, its PVH note and the exit-status path work end to end.
func TestStubBoots(t *testing.T) {
	if _, err := qemu.LookPath(""); err != nil {
		t.Fatalf("%v (run builder/install-deps.sh)", err)
	}
	img, err := Build(context.Background(), stubOptions(t.TempDir()))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	var console, stderr bytes.Buffer
	exit, err := qemu.Run(context.Background(), qemu.Config{
		Image: img.Path, Cmdline: "stub", Timeout: time.Minute, Stdout: &console, Stderr: &stderr,
	})
	if err != nil {
		t.Fatalf("Run: %v (stderr %q)", err, stderr.String())
	}
	if exit != (qemu.Exit{Status: StubStatus}) {
		t.Errorf("exit %+v, want status %d", exit, StubStatus)
	}
	if got, want := console.String(), StubConsoleLine+"\n"; got != want {
		t.Errorf("console %q, want %q", got, want)
	}
}

//go:build amd64 && linux

package vdso

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestRealRuntime builds testdata/realruntime, which gives the image to
// the real runtime's vdsoauxv (hence -checklinkname=0) and checks that
// time.Now, runtime.nanotime and syscall.Gettimeofday then run through
// the vDSO.
func TestRealRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "realruntime")
	build := exec.Command(goBin, "build", "-ldflags=-checklinkname=0", "-o", bin, "./testdata/realruntime")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		t.Fatalf("realruntime: %v\n%s", err, out)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/builder/pvhnote"
)

// result is what one unikbuild invocation produced.
type result struct {
	code           int
	stdout, stderr string
}

func unikbuild(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}, args)
	return result{code, out.String(), errb.String()}
}

// stubImage is the kernel-less stub, built once for all tests.
var stubImage = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "unikbuild-cli-test-")
	if err != nil {
		return "", err
	}
	img, err := builder.Build(context.Background(), builder.BuildOptions{
		Package: builder.StubPackage, EntrySymbol: builder.StubEntrySymbol, NoKernel: true,
		Output: filepath.Join(dir, "stub"+builder.ImageSuffix),
	})
	if err != nil {
		return "", err
	}
	return img.Path, nil
})

func stub(t *testing.T) string {
	t.Helper()
	p, err := stubImage()
	if err != nil {
		t.Fatalf("building the stub: %v", err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if p, err := stubImage(); err == nil {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

// minimalImage writes a Go-less guest running code (32-bit safe bytes).
func minimalImage(t *testing.T, code []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "guest"+builder.ImageSuffix)
	if err := os.WriteFile(p, pvhnote.Minimal(code, 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"build", "--help"}, {"run", "--help"}, {"test", "-h"}, {"xl", "--help"}, {"inspect", "--help"},
	} {
		r := unikbuild(t, args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "Usage") || r.stderr != "" {
			t.Errorf("unikbuild %v = %d, stdout %q, stderr %q; want 0 and usage on stdout", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := unikbuild(t, "run", "--help"); !strings.Contains(r.stdout, "--timeout") || !strings.Contains(r.stdout, "--net") {
		t.Errorf("run --help does not list its flags:\n%s", r.stdout)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"build", "--frob", "x"}, "unknown flag: --frob"},
		{"bad flag value", []string{"run", "--smp", "two", "x"}, "invalid argument"},
		{"build without package", []string{"build"}, "want exactly one package"},
		{"build with two packages", []string{"build", "a", "b"}, "want exactly one package"},
		{"run without target", []string{"run"}, "want one IMAGE or PKG"},
		{"test without packages", []string{"test"}, "no packages"},
		{"xl without image", []string{"xl"}, "want one IMAGE"},
		{"inspect without image", []string{"inspect"}, "want one IMAGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := unikbuild(t, tt.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, exitUsage, tt.want)
			}
		})
	}
}

// oneLine checks the error convention: a single "unikbuild: ..." line.
func oneLine(t *testing.T, stderr, want string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.Contains(l, "accelerator:") && !strings.Contains(l, "...") && !strings.Contains(l, "done in") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "unikbuild: ") || !strings.Contains(lines[0], want) {
		t.Errorf("stderr %q: want one line `unikbuild: ...%s...`", stderr, want)
	}
}

func TestRefusals(t *testing.T) {
	notImage := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notImage, []byte("not an image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"not a main package", []string{"build", "-o", filepath.Join(t.TempDir(), "x"), "../../builder/kcmdline"}, "not a main package"},
		{"cgo", []string{"build", "-o", filepath.Join(t.TempDir(), "x"), "../../builder/testdata/cgouser"}, "needs cgo"},
		{"run a file that is not an image", []string{"run", notImage}, "not a unikgo PVH image"},
		{"inspect a file that is not an image", []string{"inspect", notImage}, "not a unikgo PVH image"},
		{"xl for a file that is not an image", []string{"xl", notImage}, "not a unikgo PVH image"},
		{"cmdline with a single quote", []string{"build", "--cmdline", "it's", "../../builder/testdata/hello"}, "single quotes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := unikbuild(t, tt.args...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, exitUsage, r.stderr)
			}
			oneLine(t, r.stderr, tt.want)
		})
	}
}

func TestRefusesGOARCH(t *testing.T) {
	t.Setenv("GOARCH", "arm64")
	r := unikbuild(t, "build", "-o", filepath.Join(t.TempDir(), "x"), "../../builder/testdata/pvhstub")
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d", r.code, exitUsage)
	}
	oneLine(t, r.stderr, "GOARCH=arm64")
}

func TestRunWithoutQEMU(t *testing.T) {
	img := stub(t)
	t.Setenv("PATH", t.TempDir())
	r := unikbuild(t, "run", img)
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d", r.code, exitUsage)
	}
	oneLine(t, r.stderr, "install the Debian package qemu-system-x86")
}

func TestBuild(t *testing.T) {
	out := filepath.Join(t.TempDir(), "s.unik")
	r := unikbuild(t, "build", "--no-kernel", "--entry", builder.StubEntrySymbol, "-o", out, "../../builder/testdata/pvhstub")
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s %d bytes\n", out, st.Size()); r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
}

func TestRunStub(t *testing.T) {
	r := unikbuild(t, "run", stub(t), "--", "ignored", "args")
	if r.code != builder.StubStatus {
		t.Errorf("exit %d, want the stub's status %d (stderr %q)", r.code, builder.StubStatus, r.stderr)
	}
	if r.stdout != builder.StubConsoleLine+"\n" {
		t.Errorf("console %q, want %q", r.stdout, builder.StubConsoleLine+"\n")
	}
	if n := strings.Count(r.stderr, "accelerator: "); n != 1 {
		t.Errorf("stderr %q: want exactly one accelerator line", r.stderr)
	}
}

func TestRunGuestEnds(t *testing.T) {
	tests := []struct {
		name string
		code []byte
		args []string
		want string
	}{
		{"hang", []byte{0xfa, 0xf4, 0xeb, 0xfc}, []string{"--timeout", "2s"}, "guest still running after 2s: killed it"},
		{"triple fault", []byte{0x6a, 0x00, 0x6a, 0x00, 0x0f, 0x01, 0x1c, 0x24, 0x0f, 0x0b}, nil, "without an exit status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := unikbuild(t, append(append([]string{"run"}, tt.args...), minimalImage(t, tt.code))...)
			if r.code != exitFailure {
				t.Errorf("exit %d, want %d", r.code, exitFailure)
			}
			oneLine(t, r.stderr, tt.want)
		})
	}
}

func TestXL(t *testing.T) {
	img := stub(t)
	cfg := filepath.Join(t.TempDir(), "svc.cfg")
	r := unikbuild(t, "xl", "--mem", "256M", "--smp", "2", "--vif", "bridge=xenbr0", "--disk", "/dev/loop0",
		"--env", "A=1", "--kopt", "debug", "--name", "svc", "-o", cfg, img, "--", "x y")
	if r.code != exitOK || r.stdout != cfg+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	got, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := `# xl config for a unikgo PVH guest (written by unikbuild)
name = "svc"
type = "pvh"
kernel = "` + img + `"
cmdline = "unikgo.debug A=1 stub \"x y\""
memory = 256
vcpus = 2
vif = [ "bridge=xenbr0" ]
disk = [ "format=raw, vdev=xvda, access=rw, target=/dev/loop0" ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("xl config (-want +got):\n%s", diff)
	}
}

func TestInspect(t *testing.T) {
	r := unikbuild(t, "inspect", stub(t))
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"entry:    0x", "note:     Xen type 18", "go:       go1.", "program:  " + builder.StubPackage, "kernel:   not linked in", "section:  .text"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestTestNoTestFiles(t *testing.T) {
	r := unikbuild(t, "test", "../../builder/testdata/pvhstub")
	if want := "?   \t" + builder.StubPackage + "\t[no test files]\n"; r.code != exitOK || r.stdout != want {
		t.Errorf("exit %d, stdout %q; want 0 and %q (stderr %q)", r.code, r.stdout, want, r.stderr)
	}
}

func TestSingleDashLong(t *testing.T) {
	got := singleDashLong([]string{"-run", "X", "-bench=.", "-v", "--run=Y", "-short", "-count=2", "-runner", "pkg", "--", "-run"}, "run", "bench", "short", "count")
	want := []string{"--run", "X", "--bench=.", "-v", "--run=Y", "--short", "--count=2", "-runner", "pkg", "--", "-run"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("singleDashLong (-want +got):\n%s", diff)
	}
}

// kernelCompiles skips a test that needs the kernel while it does not
// build; the skip is reported, not counted as a pass.
func kernelCompiles(t *testing.T) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", os.DevNull, builder.KernelPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		t.Skipf("the kernel does not compile yet (%s)", first)
	}
}

func TestRunKernelImage(t *testing.T) {
	kernelCompiles(t)
	r := unikbuild(t, "run", "--timeout", "2m", "--env", "GREETING=hi there", "../../builder/testdata/hello", "--", "a", "b c")
	if r.code != 3 {
		t.Errorf("exit %d, want hello's status 3 (stderr %q)", r.code, r.stderr)
	}
	if want := `hello from unikgo: args="a|b c" GREETING="hi there"`; !strings.Contains(r.stdout, want) {
		t.Errorf("console %q lacks %q", r.stdout, want)
	}
}

func TestTestKernelImage(t *testing.T) {
	kernelCompiles(t)
	pass := unikbuild(t, "test", "-run", "TestPass", "../../builder/testdata/sample")
	if pass.code != exitOK || !strings.HasPrefix(pass.stdout, "ok  \tgithub.com/unikgo/unikgo/builder/testdata/sample\t") {
		t.Errorf("-run TestPass: exit %d, stdout %q, stderr %q", pass.code, pass.stdout, pass.stderr)
	}
	verbose := unikbuild(t, "test", "-v", "-count", "2", "-run", "TestPass", "../../builder/testdata/sample")
	if verbose.code != exitOK || strings.Count(verbose.stdout, "--- PASS: TestPass") != 2 {
		t.Errorf("-v -count 2: exit %d, stdout %q; want two PASS lines", verbose.code, verbose.stdout)
	}
	fail := unikbuild(t, "test", "-run", "TestFail", "../../builder/testdata/sample")
	if fail.code != exitFailure || !strings.Contains(fail.stdout, "sample failure") ||
		!strings.Contains(fail.stdout, "FAIL\tgithub.com/unikgo/unikgo/builder/testdata/sample\t") {
		t.Errorf("-run TestFail: exit %d, stdout %q, stderr %q", fail.code, fail.stdout, fail.stderr)
	}
}

func TestRefusesGoVersion(t *testing.T) {
	dir := t.TempDir()
	fakeGo := "#!/bin/sh\n[ \"$1 $2\" = \"env GOVERSION\" ] && { echo go1.25.3; exit 0; }\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	out := filepath.Join(t.TempDir(), "x")
	r := unikbuild(t, "build", "-o", out, "../../builder/testdata/pvhstub")
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d", r.code, exitUsage)
	}
	oneLine(t, r.stderr, "go1.25.3 is not supported")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("image written despite the refusal: %v", err)
	}
}

func TestRunDefaultCmdline(t *testing.T) {
	kernelCompiles(t)
	img := filepath.Join(t.TempDir(), "hello"+builder.ImageSuffix)
	if r := unikbuild(t, "build", "--cmdline", `GREETING="from build" hello x "y z"`, "-o", img, "../../builder/testdata/hello"); r.code != exitOK {
		t.Fatalf("build: exit %d, stderr %q", r.code, r.stderr)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"built-in line", nil, `args="x|y z" GREETING="from build"`},
		{"arguments replace it", []string{"--", "a"}, `args="a" GREETING=""`},
		{"environment replaces it", []string{"--env", "GREETING=run"}, `args="" GREETING="run"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := unikbuild(t, append([]string{"run", "--timeout", "2m", img}, tt.args...)...)
			if r.code != 3 || !strings.Contains(r.stdout, tt.want) {
				t.Errorf("exit %d, console %q; want 3 and %q (stderr %q)", r.code, r.stdout, tt.want, r.stderr)
			}
		})
	}
}

// TestRunXen boots a kernel image as a PVH guest on real Xen (the Xen lab)
// and checks that its console reaches stdout and its exit status becomes
// unikbuild's.
func TestRunXen(t *testing.T) {
	kernelCompiles(t)
	r := unikbuild(t, "run", "--xen", "--mem", "64M", "--timeout", "5m", "../../builder/testdata/hello", "--", "on", "xen")
	if r.code != 3 {
		t.Errorf("exit %d, want hello's status 3 (stderr %q)", r.code, r.stderr)
	}
	for _, want := range []string{"unikgo: 64 MiB, 1 vCPU, xen, kernel ready in", `hello from unikgo: args="on|xen"`, "unikgo: exit status 3"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("console %q lacks %q", r.stdout, want)
		}
	}
}

// TestRunXenDisks gives a Xen guest a disk and a read-only one: the
// program writes the first through /dev/xvda, and the host file holds
// what it wrote once unikbuild returns.
func TestRunXenDisks(t *testing.T) {
	kernelCompiles(t)
	dir := t.TempDir()
	rw, ro := filepath.Join(dir, "rw.img"), filepath.Join(dir, "ro.img")
	if err := os.WriteFile(rw, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	roData := make([]byte, 1<<20)
	copy(roData, "read-only disk!\n")
	if err := os.WriteFile(ro, roData, 0o644); err != nil {
		t.Fatal(err)
	}
	r := unikbuild(t, "run", "--xen", "--timeout", "5m", "--disk", rw, "--ro-disk", ro, "--env", "RODISK=/dev/xvdb",
		"../../qemu-tests/xen/testdata/disk", "--", "2", "9")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	m := regexp.MustCompile(`disk: sha256 ([0-9a-f]{64})`).FindStringSubmatch(r.stdout)
	if m == nil || !strings.Contains(r.stdout, "disk: /dev/xvdb refuses writes") {
		t.Fatalf("console %q lacks the sha256 and read-only lines", r.stdout)
	}
	data, err := os.ReadFile(rw)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(data[:2<<20])); got != m[1] {
		t.Errorf("host file's first 2 MiB hash to %s, the guest wrote %s", got, m[1])
	}
}

func TestMebibytes(t *testing.T) {
	for in, want := range map[string]int{"": 128, "64M": 64, "64m": 64, "1G": 1024, "256": 256} {
		if got, err := mebibytes(in); got != want || err != nil {
			t.Errorf("mebibytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"M", "-5M", "lots", "0"} {
		if _, err := mebibytes(bad); err == nil {
			t.Errorf("mebibytes(%q) succeeded", bad)
		}
	}
}

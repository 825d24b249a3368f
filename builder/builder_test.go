package builder

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/builder/pvhnote"
)

func TestLdflags(t *testing.T) {
	tests := []struct {
		name     string
		entry    string
		cmdline  string
		strip    bool
		noKernel bool
		want     string
	}{
		{"kernel defaults", "", "", false, false,
			"-E github.com/unikgo/unikgo/boot.pvhEntry -buildid= -B 0x0000000000000000"},
		{"strip", "", "", true, false,
			"-E github.com/unikgo/unikgo/boot.pvhEntry -buildid= -B 0x0000000000000000 -s -w"},
		{"cmdline", "", `unikgo.debug A="x y" prog`, false, false,
			`-E github.com/unikgo/unikgo/boot.pvhEntry -buildid= -B 0x0000000000000000 -X 'github.com/unikgo/unikgo/kernel.buildCmdline=unikgo.debug A="x y" prog'`},
		{"own entry", "main.stubEntry", "", false, true,
			"-E main.stubEntry -buildid= -B 0x0000000000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ldflags(tt.entry, tt.cmdline, tt.strip, tt.noKernel)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ldflags = %q\nwant       %q", got, tt.want)
			}
		})
	}
	for _, bad := range []struct {
		entry, cmdline string
		noKernel       bool
	}{
		{"", "", true},           // no entry without the kernel
		{"main.x", "prog", true}, // cmdline without the kernel
		{"", "it's", false},      // single quote
		{"", "a\nb", false},      // line break
		{"main.a b", "", false},  // space in the symbol
	} {
		if _, err := ldflags(bad.entry, bad.cmdline, false, bad.noKernel); !errors.Is(err, ErrBadOptions) {
			t.Errorf("ldflags(%q, %q, noKernel=%v) = %v, want ErrBadOptions", bad.entry, bad.cmdline, bad.noKernel, err)
		}
	}
}

func TestCheckGoVersion(t *testing.T) {
	for _, tt := range []struct {
		v  string
		ok bool
	}{
		{"go1.26", true}, {"go1.26.0", true}, {"go1.26.8", true}, {"go1.26rc2", true},
		{"go1.25.7", false}, {"go1.27.0", false}, {"go1.27rc1", false}, {"go2.0", false}, {"devel", false}, {"", false},
	} {
		err := checkGoVersion(tt.v)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrGoVersion)) {
			t.Errorf("checkGoVersion(%q) = %v, want ok=%v", tt.v, err, tt.ok)
		}
	}
}

// stubOptions builds the kernel-less stub into dir.
func stubOptions(dir string) BuildOptions {
	return BuildOptions{Package: StubPackage, EntrySymbol: StubEntrySymbol, NoKernel: true, Output: filepath.Join(dir, "stub"+ImageSuffix)}
}

func TestBuildStub(t *testing.T) {
	dir := t.TempDir()
	img, err := Build(context.Background(), stubOptions(dir))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	b, err := os.ReadFile(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := pvhnote.Read(b)
	if err != nil {
		t.Fatalf("the image is not a PVH image: %v", err)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var stubAddr uint64
	for _, s := range syms {
		if s.Name == StubEntrySymbol+".abi0" || (stubAddr == 0 && s.Name == StubEntrySymbol) {
			stubAddr = s.Value
		}
	}
	want := &Image{Path: filepath.Join(dir, "stub"+ImageSuffix), Size: int64(len(b)), Entry: stubAddr, Package: StubPackage, GoVersion: img.GoVersion}
	if diff := cmp.Diff(want, img); diff != "" {
		t.Errorf("Image (-want +got):\n%s", diff)
	}
	if info.Entry != stubAddr {
		t.Errorf("entry %#x, want %s at %#x", info.Entry, StubEntrySymbol, stubAddr)
	}
	if st, err := os.Stat(img.Path); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("image mode: %v %v, want 0755", st.Mode(), err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestBuildReproducible(t *testing.T) {
	ctx := context.Background()
	build := func(strip bool) []byte {
		opts := stubOptions(t.TempDir())
		opts.Strip = strip
		img, err := Build(ctx, opts)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		b, err := os.ReadFile(img.Path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := build(false), build(false)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same package differ")
	}
	s1, s2 := build(true), build(true)
	if !bytes.Equal(s1, s2) {
		t.Error("two stripped builds of the same package differ")
	}
	if len(s1) >= len(a) {
		t.Errorf("stripped image is %d bytes, unstripped %d: want smaller", len(s1), len(a))
	}
}

// fakeGo writes a go command that reports version v and fails otherwise.
func fakeGo(t *testing.T, v string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "go")
	script := "#!/bin/sh\n[ \"$1 $2\" = \"env GOVERSION\" ] && { echo " + v + "; exit 0; }\necho unexpected >&2; exit 3\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// externalModule writes a module outside this one with a main package; with
// requireUs it requires this module through a replace directive pointing at
// the checkout.
func externalModule(t *testing.T, requireUs bool, mainSrc string) string {
	t.Helper()
	dir := t.TempDir()
	gomod := "module example.com/ext\n\ngo 1.26\n"
	if requireUs {
		root, err := filepath.Abs("..")
		if err != nil {
			t.Fatal(err)
		}
		ours, err := os.ReadFile(filepath.Join(root, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		_, reqs, _ := strings.Cut(string(ours), "require (")
		reqs, _, _ = strings.Cut(reqs, ")")
		gomod += "\nrequire (\n\t" + ModulePath + " v0.0.0" + reqs + ")\n\nreplace " + ModulePath + " => " + root + "\n"
		sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range map[string]string{"go.mod": gomod, "main.go": mainSrc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// withFile adds an empty Go file called name to dir and returns dir.
func withFile(t *testing.T, dir, name string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// offlineEnv keeps the go command from reaching the network. It may
// complete the throwaway go.mod of an external test module from the module
// cache (-mod=mod), as `go mod tidy` would for a real user.
func offlineEnv(extra ...string) []string {
	return append(append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod"), extra...)
}

func TestBuildRefuses(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		opts BuildOptions
		want error
	}{
		{"no package", BuildOptions{}, ErrBadOptions},
		{"not a main package", BuildOptions{Package: ModulePath + "/builder/kcmdline"}, ErrNotMain},
		{"cgo", BuildOptions{Package: "./testdata/cgouser"}, ErrCgo},
		{"GOARCH", BuildOptions{Package: "./testdata/pvhstub", Env: append(os.Environ(), "GOARCH=arm64")}, ErrGOARCH},
		{"old Go", BuildOptions{Package: "./testdata/pvhstub", Go: fakeGo(t, "go1.25.3")}, ErrGoVersion},
		{"new Go", BuildOptions{Package: "./testdata/pvhstub", Go: fakeGo(t, "go1.27.1")}, ErrGoVersion},
		{"several packages", BuildOptions{Package: "./..."}, ErrBadOptions},
		{"cmdline without kernel", BuildOptions{Package: "./testdata/pvhstub", EntrySymbol: StubEntrySymbol, NoKernel: true, Cmdline: "x"}, ErrBadOptions},
		{"overlay file name taken", BuildOptions{Package: ".", Dir: withFile(t, externalModule(t, false, "package main\n\nfunc main() {}\n"), overlayFile), Env: offlineEnv()}, ErrBadOptions},
		{"module without the kernel", BuildOptions{Package: ".", Dir: externalModule(t, false, "package main\n\nfunc main() {}\n"), Env: offlineEnv()}, ErrNoKernel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "image")
			tt.opts.Output = out
			_, err := Build(ctx, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Build = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output exists after a refused build: %v", err)
			}
		})
	}
}

func TestBuildCompileError(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "image")
	_, err := Build(context.Background(), BuildOptions{Package: "./testdata/broken", NoKernel: true, EntrySymbol: "main.main", Output: out})
	var ce *CompileError
	if !errors.As(err, &ce) || !strings.Contains(ce.Output, "undefinedFunction") {
		t.Fatalf("Build = %v, want a CompileError quoting the compiler", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left in the output directory: %v", entries)
	}
}

func TestBuildExternalModule(t *testing.T) {
	// A module that requires this one builds the stub by import path.
	dir := externalModule(t, true, "package main\n\nfunc main() {}\n")
	opts := stubOptions(t.TempDir())
	opts.Dir, opts.Env = dir, offlineEnv()
	img, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatalf("Build from an external module: %v", err)
	}
	in, err := Inspect(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	if in.MainPath != StubPackage || in.KernelLinked {
		t.Errorf("Inspect: main %q, kernel linked %v; want %s without the kernel", in.MainPath, in.KernelLinked, StubPackage)
	}
}

// kernelCompiles skips tests that need the kernel while it does not build.
// Such a skip is reported, never counted as a pass.
func kernelCompiles(t *testing.T) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", os.DevNull, KernelPackage)
	cmd.Env = append(os.Environ(), targetEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		t.Skipf("the kernel does not compile yet (%s); this test needs it", first)
	}
}

func TestBuildWithKernel(t *testing.T) {
	kernelCompiles(t)
	ctx := context.Background()
	hello := "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"
	for _, tt := range []struct {
		name string
		opts BuildOptions
	}{
		{"in this module", BuildOptions{Package: "./testdata/hello", Cmdline: "hello a"}},
		{"in a module that requires this one", BuildOptions{Package: ".", Dir: externalModule(t, true, hello), Env: offlineEnv()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Output = filepath.Join(t.TempDir(), "img")
			img, err := Build(ctx, tt.opts)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			in, err := Inspect(img.Path)
			if err != nil {
				t.Fatal(err)
			}
			if !in.KernelLinked {
				t.Error("the kernel is not in the image")
			}
			if in.DefaultCmdline != tt.opts.Cmdline {
				t.Errorf("default command line %q, want %q", in.DefaultCmdline, tt.opts.Cmdline)
			}
		})
	}
	t.Run("tests of a standard library package", func(t *testing.T) {
		ti, err := BuildTest(ctx, TestOptions{Package: "strings", Output: filepath.Join(t.TempDir(), "strings.test")})
		if err != nil {
			t.Fatalf("BuildTest(strings): %v", err)
		}
		if in, err := Inspect(ti.Path); err != nil || !in.KernelLinked {
			t.Errorf("Inspect: %v, kernel linked %v", err, in != nil && in.KernelLinked)
		}
	})
}

func TestBuildTestNoTests(t *testing.T) {
	ti, err := BuildTest(context.Background(), TestOptions{Package: "./testdata/pvhstub", Output: filepath.Join(t.TempDir(), "x")})
	if err != nil {
		t.Fatal(err)
	}
	if !ti.NoTests || ti.Package != StubPackage {
		t.Errorf("BuildTest = %+v, want NoTests for %s", ti, StubPackage)
	}
}

// TestNetworkLinkedIn: programs that use package net get devices/network
// linked in, unless they drive a NIC themselves; others do not.
func TestNetworkLinkedIn(t *testing.T) {
	g := newGoTool("", "..", nil)
	for _, tt := range []struct {
		pkg  string
		want bool
	}{
		{"./examples/http", true},
		{"./examples/hello", false},
		{"./qemu-tests/xen/testdata/net", false}, // imports netfront
	} {
		p, err := g.loadMain(context.Background(), tt.pkg, true)
		if err != nil {
			t.Fatalf("%s: %v", tt.pkg, err)
		}
		if p.usesNet != tt.want {
			t.Errorf("%s: network linked in = %v, want %v", tt.pkg, p.usesNet, tt.want)
		}
	}
}

//go:build amd64 && linux

package vdso

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// funcBodies returns the named functions' bodies printed without
// comments.
func funcBodies(t *testing.T, file string, names ...string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Skipf("cannot parse %s: %v", file, err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && want[fd.Name.Name] {
			var b bytes.Buffer
			printer.Fprint(&b, fset, fd)
			var lines []string
			for _, l := range strings.Split(b.String(), "\n") {
				if strings.TrimSpace(l) != "" { // where comments were
					lines = append(lines, l)
				}
			}
			out[fd.Name.Name] = strings.Join(lines, "\n")
		}
	}
	return out
}

// The copy of the runtime's lookup in elf_test.go is the toolchain's:
// the same code once the runtime's uintptr-to-pointer conversions are
// written as they are here. A new Go release that changes the parser
// fails this test (then compare the new code with the image).
func TestRuntimeCopyIsFaithful(t *testing.T) {
	src := filepath.Join(runtime.GOROOT(), "src", "runtime")
	if _, err := os.Stat(filepath.Join(src, "vdso_linux.go")); err != nil {
		t.Skip("no runtime source:", err)
	}
	names := []string{"vdsoInitFromSysinfoEhdr", "vdsoFindVersion", "vdsoParseSymbols", "_ELF_ST_BIND", "_ELF_ST_TYPE"}
	theirs := funcBodies(t, filepath.Join(src, "vdso_linux.go"), names...)
	ours := funcBodies(t, "elf_test.go", names...)
	for _, n := range names {
		o := strings.ReplaceAll(ours[n], "ptrAt(", "unsafe.Pointer(")
		if theirs[n] == "" || o != theirs[n] {
			t.Errorf("%s differs from the runtime's:\n--- runtime\n%s\n--- here\n%s", n, theirs[n], o)
		}
	}
	amd64, err := os.ReadFile(filepath.Join(src, "vdso_linux_amd64.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`vdsoVersionKey{"LINUX_2.6", 0x3ae75f6}`,
		`{"__vdso_gettimeofday", 0x315ca59, 0xb01bca00, &vdsoGettimeofdaySym}`,
		`{"__vdso_clock_gettime", 0xd35ec75, 0x6e43a318, &vdsoClockgettimeSym}`,
	} {
		if !bytes.Contains(amd64, []byte(s)) {
			t.Errorf("runtime/vdso_linux_amd64.go no longer has %s", s)
		}
	}
	elf64, err := os.ReadFile(filepath.Join(src, "vdso_elf64.go"))
	if err != nil {
		t.Fatal(err)
	}
	theirTypes := typeDecls(t, filepath.Join(src, "vdso_elf64.go"), elf64)
	for name, decl := range typeDecls(t, "elf_test.go", nil) {
		if d, ok := theirTypes[name]; ok && d != decl {
			t.Errorf("type %s differs from the runtime's:\n%s\n%s", name, d, decl)
		}
	}
	for _, name := range []string{"elfSym", "elfVerdef", "elfEhdr", "elfPhdr", "elfDyn", "elfVerdaux"} {
		if _, ok := theirTypes[name]; !ok {
			t.Errorf("runtime has no type %s", name)
		}
	}
}

func typeDecls(t *testing.T, file string, src []byte) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	var s any
	if src != nil {
		s = src
	}
	f, err := parser.ParseFile(fset, file, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, sp := range gd.Specs {
			ts := sp.(*ast.TypeSpec)
			var b bytes.Buffer
			printer.Fprint(&b, fset, ts.Type)
			out[ts.Name.Name] = b.String()
		}
	}
	return out
}

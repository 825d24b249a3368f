package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/version"
	"os"
	"os/exec"
	"strings"
)

// Error kinds, wrapped by the errors Build and BuildTest return, so callers
// can tell a refusal (the user must change something) from a failed compile.
var (
	ErrNotMain    = errors.New("not a main package")
	ErrCgo        = errors.New("package needs cgo")
	ErrGOARCH     = errors.New("GOARCH is not amd64")
	ErrGoVersion  = errors.New("Go version outside the known-good range")
	ErrNoKernel   = errors.New("kernel package not found")
	ErrBadOptions = errors.New("invalid build options")
)

// CompileError is a go build or go test -c that failed; Output is what the
// go command printed.
type CompileError struct {
	Package string
	Output  string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("building %s failed:\n%s", e.Package, strings.TrimRight(e.Output, "\n"))
}

// goTool runs the go command in one directory with one base environment.
type goTool struct {
	bin string
	dir string
	env []string
}

func newGoTool(bin, dir string, env []string) goTool {
	if bin == "" {
		bin = "go"
	}
	if env == nil {
		env = os.Environ()
	}
	return goTool{bin: bin, dir: dir, env: env}
}

// command prepares a go invocation with extra environment settings.
func (g goTool) command(ctx context.Context, extraEnv []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, g.bin, args...)
	cmd.Dir = g.dir
	cmd.Env = append(append([]string{}, g.env...), extraEnv...)
	return cmd
}

// targetEnv is the environment every image is built in.
var targetEnv = []string{"CGO_ENABLED=0", "GOOS=" + targetGOOS, "GOARCH=" + targetGOARCH}

// output runs the go command and returns stdout, or an error carrying stderr.
func (g goTool) output(ctx context.Context, extraEnv []string, args ...string) ([]byte, error) {
	cmd := g.command(ctx, extraEnv, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return nil, fmt.Errorf("running %s: %v (is Go installed and on PATH?)", g.bin, err)
		}
		return nil, fmt.Errorf("%s %s: %s", g.bin, args[0], strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// checkEnv refuses a GOARCH other than amd64 set by the user, and a Go
// toolchain outside the known-good range. It returns the Go version.
func (g goTool) checkEnv(ctx context.Context) (string, error) {
	for _, kv := range g.env {
		if v, ok := strings.CutPrefix(kv, "GOARCH="); ok && v != "" && v != targetGOARCH {
			return "", fmt.Errorf("%w: GOARCH=%s is set; unikgo images are amd64 only: unset GOARCH", ErrGOARCH, v)
		}
	}
	out, err := g.output(ctx, nil, "env", "GOVERSION")
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(out))
	return v, checkGoVersion(v)
}

// checkGoVersion accepts MinGoVersion <= v < MaxGoVersion.
func checkGoVersion(v string) error {
	if !version.IsValid(v) {
		return fmt.Errorf("%w: cannot parse Go version %q; use a %s release", ErrGoVersion, v, MinGoVersion)
	}
	if version.Compare(v, MinGoVersion) < 0 || version.Compare(version.Lang(v), MaxGoVersion) >= 0 {
		return fmt.Errorf("%w: %s is not supported; use Go >= %s and < %s", ErrGoVersion, v, MinGoVersion, MaxGoVersion)
	}
	return nil
}

// ListPackages expands package patterns (such as ./...) into import paths,
// running the go command in dir.
func ListPackages(ctx context.Context, goBin, dir string, patterns []string) ([]string, error) {
	g := newGoTool(goBin, dir, nil)
	out, err := g.output(ctx, targetEnv, append([]string{"list", "--"}, patterns...)...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// listedPackage is the part of `go list -json` output builder uses.
type listedPackage struct {
	ImportPath string
	Name       string
	Dir        string
	Standard   bool
	DepOnly    bool
	CgoFiles   []string
	// TestGoFiles and XTestGoFiles tell whether a package has tests.
	TestGoFiles  []string
	XTestGoFiles []string
	Error        *struct{ Err string }

	// usesNet is set on the main package when it depends on package net
	// and not on a NIC driver.
	usesNet bool
}

// loadMain lists pattern and its dependencies as they would be built with
// cgo enabled, so that cgo use shows up, and checks that pattern is exactly
// one package that can become an image. With wantMain unset (tests) any
// package name is accepted.
func (g goTool) loadMain(ctx context.Context, pattern string, wantMain bool) (*listedPackage, error) {
	out, err := g.output(ctx, []string{"CGO_ENABLED=1", "GOOS=" + targetGOOS, "GOARCH=" + targetGOARCH},
		"list", "-e", "-deps", "-json=ImportPath,Name,Dir,Standard,DepOnly,CgoFiles,TestGoFiles,XTestGoFiles,Error", "--", pattern)
	if err != nil {
		return nil, err
	}
	var roots, deps []*listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		p := new(listedPackage)
		if err := dec.Decode(p); err != nil {
			return nil, fmt.Errorf("reading go list output for %s: %v", pattern, err)
		}
		if p.DepOnly {
			deps = append(deps, p)
		} else {
			roots = append(roots, p)
		}
	}
	switch {
	case len(roots) == 0:
		return nil, fmt.Errorf("%w: %s matches no packages", ErrBadOptions, pattern)
	case len(roots) > 1:
		return nil, fmt.Errorf("%w: %s matches %d packages; give one package", ErrBadOptions, pattern, len(roots))
	}
	root := roots[0]
	if root.Error != nil {
		return nil, fmt.Errorf("package %s: %s", pattern, root.Error.Err)
	}
	if wantMain && root.Name != "main" {
		return nil, fmt.Errorf("%w: %s is package %s; unikbuild builds main packages", ErrNotMain, root.ImportPath, root.Name)
	}
	ownsNICs := false
	for _, p := range append([]*listedPackage{root}, deps...) {
		switch p.ImportPath {
		case "net":
			root.usesNet = true
		case NICDrivers[0], NICDrivers[1]:
			ownsNICs = true
		}
		if p.Error != nil {
			return nil, fmt.Errorf("package %s: %s", p.ImportPath, p.Error.Err)
		}
		if !p.Standard && len(p.CgoFiles) > 0 {
			return nil, fmt.Errorf("%w: %s uses cgo (%s imports \"C\"); images are built with CGO_ENABLED=0: drop the cgo dependency",
				ErrCgo, p.ImportPath, p.CgoFiles[0])
		}
	}
	if ownsNICs {
		// A program that drives network devices itself keeps them.
		root.usesNet = false
	}
	return root, nil
}

// explainBuildFailure turns the go command's complaint about a missing
// kernel package into advice; other output is returned as a CompileError.
func explainBuildFailure(pkg, dir, output string) error {
	if strings.Contains(output, KernelPackage) &&
		(strings.Contains(output, "no required module provides") || strings.Contains(output, "cannot find") ||
			strings.Contains(output, "not in std") || strings.Contains(output, "is not in GOROOT")) {
		if dir == "" {
			dir = "."
		}
		return fmt.Errorf("%w: %s cannot import %s: run `go get %s` in the module at %s", ErrNoKernel, pkg, KernelPackage, ModulePath, dir)
	}
	return &CompileError{Package: pkg, Output: output}
}

package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/unikgo/unikgo/builder/progress"
)

// TestOptions says which package's tests to build.
type TestOptions struct {
	Package  string    // import path or relative directory, resolved in Dir
	Dir      string    // where the go command runs; "" means the current directory
	Output   string    // image path (required)
	Go       string    // go command; "" means "go" on PATH
	Env      []string  // base environment; nil means os.Environ()
	Progress io.Writer // progress lines for slow steps; nil is quiet
	Tags     []string  // build tags (go test -tags)
}

// TestImage is a built test image.
type TestImage struct {
	Image
	// NoTests is set when the package has no test files; no image is
	// built then, as go test would run nothing.
	NoTests bool
}

// BuildTest builds the tests of a package (any package, including standard
// library ones) as a PVH image. The kernel is linked in through an overlay
// that adds an external test file importing it to the package's directory;
// the go command accepts such an overlay file even in GOROOT.
func BuildTest(ctx context.Context, opts TestOptions) (*TestImage, error) {
	if opts.Package == "" || opts.Output == "" {
		return nil, fmt.Errorf("%w: BuildTest needs a package and an output path", ErrBadOptions)
	}
	if strings.HasPrefix(opts.Package, "-") {
		return nil, fmt.Errorf("%w: package %q looks like a flag", ErrBadOptions, opts.Package)
	}
	ld, err := ldflags("", "", false, false)
	if err != nil {
		return nil, err
	}
	g := newGoTool(opts.Go, opts.Dir, opts.Env)
	goVersion, err := g.checkEnv(ctx)
	if err != nil {
		return nil, err
	}
	pkg, err := g.loadMain(ctx, opts.Package, false)
	if err != nil {
		return nil, err
	}
	if len(pkg.TestGoFiles)+len(pkg.XTestGoFiles) == 0 {
		return &TestImage{Image: Image{Package: pkg.ImportPath, GoVersion: goVersion}, NoTests: true}, nil
	}
	work, err := os.MkdirTemp("", "unikbuild-test-")
	if err != nil {
		return nil, fmt.Errorf("creating a work directory: %v", err)
	}
	defer os.RemoveAll(work)
	ov, err := writeOverlay(work, pkg.Dir, overlayTestFile,
		"package "+pkg.Name+"_test\n\nimport _ \""+KernelPackage+"\"\n")
	if err != nil {
		return nil, err
	}
	linked := filepath.Join(work, "test")
	args := []string{"test", "-c", "-trimpath", "-ldflags", ld, "-overlay", ov, "-o", linked}
	if len(opts.Tags) > 0 {
		args = append(args, "-tags", strings.Join(opts.Tags, ","))
	}
	args = append(args, opts.Package)
	step := progress.Start(opts.Progress, "building tests of "+pkg.ImportPath)
	if err := runGo(ctx, g, pkg.ImportPath, args); err != nil {
		step.Cancel()
		return nil, err
	}
	step.Done()
	img, err := finish(linked, opts.Output)
	if err != nil {
		return nil, err
	}
	img.Package, img.GoVersion = pkg.ImportPath, goVersion
	return &TestImage{Image: *img}, nil
}

package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/unikgo/unikgo/builder/progress"
	"github.com/unikgo/unikgo/builder/pvhnote"
)

// BuildOptions says what to build and how.
type BuildOptions struct {
	// Package is the main package: an import path or a relative directory
	// ("./cmd/x"), resolved in Dir.
	Package string
	// Dir is where the go command runs (the user's module); "" means the
	// current directory.
	Dir string
	// Output is the image path; "" means the package's last path element
	// plus ImageSuffix, in the current directory.
	Output string
	// Cmdline is the default kernel command line, used when the boot loader
	// passes none. It may not contain a single quote (see ldflags).
	Cmdline string
	// Strip drops the symbol table and DWARF (-s -w).
	Strip bool
	// EntrySymbol is the PVH entry point; "" means the kernel's EntrySymbol.
	EntrySymbol string
	// NoKernel builds the package as it is, without linking the kernel in:
	// for images that bring their own entry point, such as StubPackage.
	NoKernel bool

	// Go is the go command; "" means "go" on PATH.
	Go string
	// Env is the environment the go command starts from; nil means
	// os.Environ(). CGO_ENABLED, GOOS and GOARCH are always overridden.
	Env []string
	// Progress receives a line for steps that take more than a second; nil
	// keeps Build quiet.
	Progress io.Writer
}

// Image is a built PVH image.
type Image struct {
	Path      string // where it was written
	Size      int64  // file size in bytes
	Entry     uint64 // physical entry point (ELF entry = PVH note)
	Package   string // import path of the main package
	GoVersion string // toolchain that built it
}

// Build compiles the main package with the kernel linked in and writes a
// PVH image. The image appears at Output complete or not at all.
func Build(ctx context.Context, opts BuildOptions) (*Image, error) {
	if opts.Package == "" {
		return nil, fmt.Errorf("%w: no package given", ErrBadOptions)
	}
	ld, err := ldflags(opts.EntrySymbol, opts.Cmdline, opts.Strip, opts.NoKernel)
	if err != nil {
		return nil, err
	}
	g := newGoTool(opts.Go, opts.Dir, opts.Env)
	goVersion, err := g.checkEnv(ctx)
	if err != nil {
		return nil, err
	}
	pkg, err := g.loadMain(ctx, opts.Package, true)
	if err != nil {
		return nil, err
	}
	out := opts.Output
	if out == "" {
		out = path.Base(pkg.ImportPath) + ImageSuffix
	}

	work, err := os.MkdirTemp("", "unikbuild-")
	if err != nil {
		return nil, fmt.Errorf("creating a work directory: %v", err)
	}
	defer os.RemoveAll(work)
	args := []string{"build", "-trimpath", "-ldflags", ld}
	if !opts.NoKernel {
		src := "package main\n\nimport _ \"" + KernelPackage + "\"\n"
		if pkg.usesNet {
			src += "import _ \"" + NetworkPackage + "\"\n"
		}
		ov, err := writeOverlay(work, pkg.Dir, overlayFile, src)
		if err != nil {
			return nil, err
		}
		args = append(args, "-overlay", ov)
	}
	linked := filepath.Join(work, "image")
	args = append(args, "-o", linked, "--", opts.Package)

	step := progress.Start(opts.Progress, "building "+pkg.ImportPath)
	if err := runGo(ctx, g, pkg.ImportPath, args); err != nil {
		step.Cancel()
		return nil, err
	}
	step.Done()
	img, err := finish(linked, out)
	if err != nil {
		return nil, err
	}
	img.Package, img.GoVersion = pkg.ImportPath, goVersion
	return img, nil
}

// runGo runs a go build or go test -c for the target and explains failures.
func runGo(ctx context.Context, g goTool, pkg string, args []string) error {
	cmd := g.command(ctx, targetEnv, args...)
	var outBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("building %s: %w", pkg, ctx.Err())
		}
		if outBuf.Len() == 0 {
			return fmt.Errorf("running %s: %v (is Go installed and on PATH?)", g.bin, err)
		}
		return explainBuildFailure(pkg, g.dir, outBuf.String())
	}
	return nil
}

// ldflags assembles the linker flags of the contract. The -X value is
// single-quoted for the go command's flag splitter, which has no escapes,
// so a command line with a single quote cannot be passed.
func ldflags(entry, cmdline string, strip, noKernel bool) (string, error) {
	if entry == "" {
		if noKernel {
			return "", fmt.Errorf("%w: without the kernel an entry symbol must be given", ErrBadOptions)
		}
		entry = EntrySymbol
	}
	if strings.ContainsAny(entry, " \t\n'\"") {
		return "", fmt.Errorf("%w: entry symbol %q contains spaces or quotes", ErrBadOptions, entry)
	}
	flags := []string{"-E", entry, "-buildid=", buildIDFlag}
	if strip {
		flags = append(flags, "-s", "-w")
	}
	if cmdline != "" {
		if noKernel {
			return "", fmt.Errorf("%w: --cmdline needs the kernel, which this build leaves out", ErrBadOptions)
		}
		if strings.ContainsAny(cmdline, "'\n\r\x00") {
			return "", fmt.Errorf("%w: the command line may not contain single quotes or line breaks", ErrBadOptions)
		}
		flags = append(flags, "-X", "'"+CmdlineVar+"="+cmdline+"'")
	}
	return strings.Join(flags, " "), nil
}

// writeOverlay writes src as file name into dir's package through a go
// build overlay and returns the overlay's JSON path. The user's directory is
// not touched.
func writeOverlay(work, pkgDir, name, src string) (string, error) {
	target := filepath.Join(pkgDir, name)
	if _, err := os.Lstat(target); err == nil {
		return "", fmt.Errorf("%w: %s already exists; unikbuild needs that file name for its kernel import: rename the file", ErrBadOptions, target)
	}
	gen := filepath.Join(work, name)
	if err := os.WriteFile(gen, []byte(src), 0o644); err != nil {
		return "", fmt.Errorf("writing the overlay file: %v", err)
	}
	b, err := json.Marshal(map[string]map[string]string{"Replace": {target: gen}})
	if err != nil {
		return "", err
	}
	ov := filepath.Join(work, "overlay.json")
	if err := os.WriteFile(ov, b, 0o644); err != nil {
		return "", fmt.Errorf("writing the overlay: %v", err)
	}
	return ov, nil
}

// finish rewrites the linked file's build ID note into the PVH note and
// moves the result to out atomically (a temporary file in out's directory,
// renamed when complete).
func finish(linked, out string) (*Image, error) {
	b, err := os.ReadFile(linked)
	if err != nil {
		return nil, fmt.Errorf("reading the linked image: %v", err)
	}
	entry, err := pvhnote.Rewrite(b)
	if err != nil {
		return nil, fmt.Errorf("the linker output cannot become a PVH image: %w", err)
	}
	if _, err := pvhnote.Read(b); err != nil {
		return nil, fmt.Errorf("the rewritten image does not check out: %w", err)
	}
	if err := writeAtomic(out, b, 0o755); err != nil {
		return nil, err
	}
	return &Image{Path: out, Size: int64(len(b)), Entry: entry}, nil
}

// writeAtomic writes data to path through a temporary file in the same
// directory so that readers never see a partial file.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %v", path, err)
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %v", path, err)
	}
	if err := os.Chmod(tmp.Name(), perm); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %v", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %v", path, err)
	}
	return nil
}

package main

import (
	"context"
	"fmt"

	"github.com/unikgo/unikgo/builder"
)

const buildSynopsis = `build [-o IMAGE] [--cmdline "..."] [--strip] PKG

Builds the main package PKG with the unikgo kernel linked in and writes a PVH
image (default: the package's name plus ` + builder.ImageSuffix + `). Prints the image path
and size.`

func runBuild(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "build", buildSynopsis)
	var opts builder.BuildOptions
	fs.StringVarP(&opts.Output, "output", "o", "", "image `path`")
	fs.StringVar(&opts.Cmdline, "cmdline", "", "default kernel command `line` when the boot loader passes none")
	fs.BoolVar(&opts.Strip, "strip", false, "leave out the symbol table and DWARF")
	addEntryFlags(fs, &opts)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("build: want exactly one package, got %d arguments (see unikbuild build --help)", fs.NArg())
	}
	opts.Package = fs.Arg(0)
	opts.Progress = e.stderr
	img, err := builder.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %d bytes\n", img.Path, img.Size)
	return nil
}

// addEntryFlags adds the flags for kernel-less images (such as the test
// stub), shared by build and run.
func addEntryFlags(fs interface {
	StringVar(*string, string, string, string)
	BoolVar(*bool, string, bool, string)
}, opts *builder.BuildOptions) {
	fs.StringVar(&opts.EntrySymbol, "entry", "", "PVH entry `symbol` (default "+builder.EntrySymbol+")")
	fs.BoolVar(&opts.NoKernel, "no-kernel", false, "do not link the kernel in (for images with their own --entry)")
}

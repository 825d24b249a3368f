package main

import (
	"context"
	"fmt"

	"github.com/unikgo/unikgo/builder"
)

const inspectSynopsis = `inspect IMAGE

Prints an image's entry point, notes, segments, sizes, Go version and kernel
version, after checking that it is a unikgo PVH image.`

func runInspect(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "inspect", inspectSynopsis)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("inspect: want one IMAGE, got %d arguments", fs.NArg())
	}
	in, err := builder.Inspect(fs.Arg(0))
	if err != nil {
		return err
	}
	w := e.stdout
	fmt.Fprintf(w, "image:    %s (%d bytes)\n", in.Path, in.Size)
	fmt.Fprintf(w, "entry:    %#x (ELF entry and PVH note agree)\n", in.Entry)
	fmt.Fprintf(w, "loads at: %#x-%#x (%d bytes in memory)\n", in.LoadStart, in.LoadEnd, in.LoadEnd-in.LoadStart)
	for _, n := range in.Notes {
		fmt.Fprintf(w, "note:     %s type %d desc % x\n", n.Name, n.Type, n.Desc)
	}
	for _, s := range in.Segments {
		fmt.Fprintf(w, "segment:  %-8v %-6v paddr %#x file %d mem %d align %#x\n",
			s.Type, s.Flags, s.Paddr, s.Filesz, s.Memsz, s.Align)
	}
	for _, s := range in.Sections {
		fmt.Fprintf(w, "section:  %-20s %d\n", s.Name, s.Size)
	}
	fmt.Fprintf(w, "go:       %s\n", orUnknown(in.GoVersion))
	fmt.Fprintf(w, "program:  %s\n", orUnknown(in.MainPath))
	kernel := "not linked in"
	if in.KernelLinked {
		kernel = builder.KernelPackage + " " + orUnknown(in.KernelVersion)
	}
	fmt.Fprintf(w, "kernel:   %s\n", kernel)
	if in.DefaultCmdline != "" {
		fmt.Fprintf(w, "cmdline:  %s (default, from --cmdline)\n", in.DefaultCmdline)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

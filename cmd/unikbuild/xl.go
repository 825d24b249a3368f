package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/builder/xlconfig"
)

const xlSynopsis = `xl [--mem M] [--smp N] [--vif SPEC] [--disk SPEC] [-o FILE] IMAGE [-- ARGS]

Writes an xl config (default: IMAGE without ` + builder.ImageSuffix + `, plus .cfg) that boots IMAGE as a
Xen PVH guest with ARGS as the program's arguments.`

func runXL(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "xl", xlSynopsis)
	mem := fs.String("mem", fmt.Sprintf("%dM", xlconfig.DefaultMemoryMiB), "guest memory (`size` in MiB, or with M or G)")
	vcpus := fs.Int("smp", xlconfig.DefaultVCPUs, "number of vCPUs")
	vifs := fs.StringArray("vif", nil, "xl vif `spec`, e.g. bridge=xenbr0 (repeatable)")
	disks := fs.StringArray("disk", nil, "xl disk `spec` or a raw image path (repeatable)")
	name := fs.String("name", "", "domain `name` (default: the image's base name)")
	out := fs.StringP("output", "o", "", "config `file` to write")
	var rf runFlags
	fs.StringArrayVar(&rf.env, "env", nil, "environment `NAME=VALUE` for the program (repeatable)")
	fs.StringArrayVar(&rf.opts, "kopt", nil, "kernel `option` (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	pos, guestArgs := fs.Args(), []string(nil)
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		pos, guestArgs = fs.Args()[:dash], fs.Args()[dash:]
	}
	if len(pos) != 1 {
		return usageError("xl: want one IMAGE, got %d arguments (see unikbuild xl --help)", len(pos))
	}
	image := pos[0]
	if _, err := readImage(image); err != nil {
		return err
	}
	memMiB, err := xlconfig.ParseMemory(*mem)
	if err != nil {
		return usageError("xl: --mem: %v", err)
	}
	base := strings.TrimSuffix(filepath.Base(image), builder.ImageSuffix)
	if *name == "" {
		*name = base
	}
	if *out == "" {
		*out = strings.TrimSuffix(image, builder.ImageSuffix) + ".cfg"
	}
	cmdline, err := rf.cmdline(base, guestArgs)
	if err != nil {
		return usageError("xl: %v", err)
	}
	text, err := xlconfig.Config{
		Name: *name, Kernel: image, MemoryMiB: memMiB, VCPUs: *vcpus,
		Cmdline: cmdline, VIFs: *vifs, Disks: *disks,
	}.Render()
	if err != nil {
		return usageError("xl: %v", err)
	}
	if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
		return fmt.Errorf("xl: %v", err)
	}
	fmt.Fprintln(e.stdout, *out)
	return nil
}

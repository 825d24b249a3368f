package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/builder/kcmdline"
	"github.com/unikgo/unikgo/builder/progress"
	"github.com/unikgo/unikgo/builder/pvhnote"
	"github.com/unikgo/unikgo/builder/qemu"
)

const runSynopsis = `run [flags] IMAGE|PKG [-- ARGS]

Boots IMAGE (or builds the main package PKG first) under QEMU with the
console on stdout, or with --xen as a PVH guest on real Xen (the Xen lab).
ARGS become the program's arguments. The guest's exit status becomes
unikbuild's.`

// runFlags are the guest settings shared by run and test.
type runFlags struct {
	mem     string
	smp     int
	net     string
	disks   []string
	roDisks []string
	timeout time.Duration
	env     []string
	opts    []string
}

func (r *runFlags) add(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	StringArrayVar(*[]string, string, []string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}, timeout time.Duration) {
	fs.StringVar(&r.mem, "mem", qemu.DefaultMemory, "guest memory (QEMU `size` syntax)")
	fs.IntVar(&r.smp, "smp", qemu.DefaultCPUs, "number of vCPUs")
	fs.StringVar(&r.net, "net", "", "network: `user[,hostfwd=...]` (QEMU user networking, virtio-net)")
	fs.StringArrayVar(&r.disks, "disk", nil, "raw disk image `file` attached as virtio-blk (repeatable)")
	fs.StringArrayVar(&r.roDisks, "ro-disk", nil, "raw disk image `file` attached read-only, after the --disk ones (repeatable)")
	fs.DurationVar(&r.timeout, "timeout", timeout, "kill the guest after this `duration` (0: never)")
	fs.StringArrayVar(&r.env, "env", nil, "environment `NAME=VALUE` for the program (repeatable)")
	fs.StringArrayVar(&r.opts, "kopt", nil, "kernel `option` "+kcmdline.OptionPrefix+"NAME[=VALUE] (repeatable)")
}

// cmdline builds the kernel command line for program prog with args.
func (r *runFlags) cmdline(prog string, args []string) (string, error) {
	opts := make([]string, len(r.opts))
	for i, o := range r.opts {
		if !strings.HasPrefix(o, kcmdline.OptionPrefix) {
			o = kcmdline.OptionPrefix + o
		}
		opts[i] = o
	}
	return kcmdline.Line{Options: opts, Env: r.env, Args: append([]string{prog}, args...)}.String()
}

func runRun(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "run", runSynopsis)
	var rf runFlags
	rf.add(fs, 0)
	var bopts builder.BuildOptions
	addEntryFlags(fs, &bopts)
	xen := fs.Bool("xen", false, "boot as a PVH guest on real Xen in the Xen lab (Xen 4.17 + dom0 under QEMU) instead")
	if err := parse(fs, args); err != nil {
		return err
	}
	pos, guestArgs := fs.Args(), []string(nil)
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		pos, guestArgs = fs.Args()[:dash], fs.Args()[dash:]
	}
	if len(pos) != 1 {
		return usageError("run: want one IMAGE or PKG before --, got %d (see unikbuild run --help)", len(pos))
	}
	target := pos[0]
	// Check QEMU before spending time on a build.
	if _, err := qemu.LookPath(""); err != nil {
		return err
	}

	image, builtIn := target, ""
	if !isImageFile(target) {
		work, err := os.MkdirTemp("", "unikbuild-run-")
		if err != nil {
			return fmt.Errorf("creating a work directory: %v", err)
		}
		defer os.RemoveAll(work)
		bopts.Package = target
		bopts.Output = filepath.Join(work, "image")
		bopts.Progress = e.stderr
		img, err := builder.Build(ctx, bopts)
		if err != nil {
			return err
		}
		image = img.Path
		target = path.Base(img.Package)
	} else {
		in, err := builder.Inspect(image)
		if err != nil {
			return err
		}
		builtIn = in.DefaultCmdline
	}
	// An image built with --cmdline runs with that line unless this run
	// gives the program arguments, environment or kernel options.
	cmdline := ""
	if fs.ArgsLenAtDash() >= 0 || len(rf.env) > 0 || len(rf.opts) > 0 || builtIn == "" {
		prog := strings.TrimSuffix(filepath.Base(target), builder.ImageSuffix)
		var err error
		if cmdline, err = rf.cmdline(prog, guestArgs); err != nil {
			return usageError("run: %v", err)
		}
	}
	if *xen {
		return runXen(ctx, e, rf, image, cmdline)
	}
	exit, err := boot(ctx, e, rf, image, cmdline, e.stdout)
	if err != nil {
		return err
	}
	return guestExit(exit)
}

// boot runs image under QEMU with the accelerator that really works,
// announcing the accelerator in one line.
func boot(ctx context.Context, e env, rf runFlags, image, cmdline string, console io.Writer) (qemu.Exit, error) {
	accel := e.accel.get(ctx, e.stderr)
	out := &firstWrite{w: console}
	step := progress.Start(e.stderr, "starting QEMU")
	out.onFirst = step.Cancel
	defer step.Cancel()
	return qemu.Run(ctx, qemu.Config{
		Image: image, Cmdline: cmdline,
		Memory: rf.mem, CPUs: rf.smp, Net: rf.net, Disks: rf.disks, ReadOnlyDisks: rf.roDisks,
		Accel: accel, Timeout: rf.timeout,
		Stdin: e.stdin, Stdout: out, Stderr: e.stderr,
	})
}

// guestExit turns the guest's end into unikbuild's exit status.
func guestExit(x qemu.Exit) error {
	switch {
	case x.PoweredOff:
		return &exitError{code: exitFailure, msg: "guest stopped without an exit status (triple fault or ACPI poweroff)"}
	case x.Status == qemu.KernelFaultStatus:
		return &exitError{code: x.Status, msg: fmt.Sprintf("guest kernel fault (status %d, details above)", x.Status)}
	case x.Status != 0:
		return &exitError{code: x.Status}
	}
	return nil
}

// isImageFile reports whether target names an existing regular file (an
// image) rather than a package.
func isImageFile(target string) bool {
	st, err := os.Stat(target)
	return err == nil && st.Mode().IsRegular()
}

// readImage checks that path is a unikgo image.
func readImage(path string) (*pvhnote.Info, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	info, err := pvhnote.Read(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// firstWrite calls onFirst before the first byte passes through.
type firstWrite struct {
	w       io.Writer
	once    sync.Once
	onFirst func()
}

func (f *firstWrite) Write(p []byte) (int, error) {
	f.once.Do(f.onFirst)
	return f.w.Write(p)
}

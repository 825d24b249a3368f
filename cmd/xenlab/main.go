// Command xenlab boots real Xen with a Debian dom0 under QEMU and runs a guest on it, so a
// unikgo image can be seen booting on real Xen with one command:
//
//	xenlab run path/to/image
//
// Other commands build the cached dom0 (build), run the Linux baseline guest (baseline) and
// run commands in dom0 (shell). See qemu-tests/xenlab/README.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/unikgo/unikgo/qemu-tests/xenlab"
)

const usage = `usage: xenlab <command> [flags]

Commands:
  run IMAGE     boot Xen + dom0, run IMAGE as a guest (PVH by default), print its
                output (Xen console "(dN)" lines and PV console), power off
  baseline      run the Linux baseline guest (PV, busybox) and print its console
  shell         boot the lab and run each line of stdin as a dom0 shell command
  build         build or verify the cached dom0 and print its directory

Exit status: 0 success, 1 failure (guest did not power off cleanly, lab error), 2 usage.
Run "xenlab <command> --help" for the command's flags.
`

// processStart is when the command started: a cycle is measured from here (cache check,
// boot, guest, poweroff).
var processStart = time.Now()

// exitError carries an exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes one xenlab command line and returns the exit status.
func run(ctx context.Context, args []string) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, usage)
		if len(args) < 1 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:])
	case "baseline":
		err = cmdBaseline(ctx, args[1:])
	case "shell":
		err = cmdShell(ctx, args[1:])
	case "build":
		err = cmdBuild(ctx, args[1:])
	default:
		fmt.Fprintf(os.Stderr, "xenlab: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if ee == nil || ee.err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return code
}

// labFlags are the flags every lab-booting command shares.
type labFlags struct {
	dir      string
	keep     bool
	cpus     int
	timeout  time.Duration
	verbose  bool
	cacheDir string
}

func (f *labFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.dir, "dir", "", "work directory for logs and the dom0 share (default: a new temporary directory)")
	fs.BoolVar(&f.keep, "keep", false, "keep the work directory even on success")
	fs.IntVar(&f.cpus, "cpus", 1, "QEMU vCPUs (TCG runs one host thread per vCPU)")
	fs.DurationVar(&f.timeout, "lab-timeout", 15*time.Minute, "hard deadline for the whole lab; QEMU is killed then")
	fs.BoolVar(&f.verbose, "verbose", false, "print progress of the dom0 build and boot")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "dom0 cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/unikgo/xenlab)")
}

func (f *labFlags) options() xenlab.Options {
	o := xenlab.Options{Dir: f.dir, CPUs: f.cpus, Timeout: f.timeout, Build: xenlab.BuildOptions{CacheDir: f.cacheDir}}
	// Slow steps always report progress; --verbose adds the rest.
	o.Progress = &slowOnly{w: os.Stderr, verbose: f.verbose}
	o.Build.Progress = os.Stderr // building the dom0 takes minutes: always shown
	return o
}

// slowOnly passes progress lines through when verbose, and otherwise only the ones about
// slow steps (booting), keeping the default output quiet.
type slowOnly struct {
	w       io.Writer
	verbose bool
}

func (s *slowOnly) Write(p []byte) (int, error) {
	if s.verbose || strings.Contains(string(p), "booting") || strings.Contains(string(p), "deadline") ||
		strings.Contains(string(p), "killing") {
		return s.w.Write(p)
	}
	return len(p), nil
}

func newFlagSet(name, args string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: xenlab %s %s\n\nFlags:\n%s", name, args, fs.FlagUsages())
	}
	return fs
}

func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return &exitError{2, fmt.Errorf("xenlab: %v", err)}
	}
	return nil
}

// startLab boots a lab and returns a cleanup that closes it and removes its directory
// unless the run failed or --keep was given.
func startLab(ctx context.Context, lf *labFlags) (*xenlab.Lab, func(failed bool), error) {
	lab, err := xenlab.Start(ctx, lf.options())
	if err != nil {
		return nil, nil, err
	}
	return lab, func(failed bool) {
		lab.Close()
		if failed || lf.keep || lf.dir != "" {
			fmt.Fprintf(os.Stderr, "xenlab: logs kept in %s\n", lab.Dir())
			return
		}
		lab.RemoveDir()
	}, nil
}

func cmdRun(ctx context.Context, args []string) error {
	fs := newFlagSet("run", "[flags] IMAGE")
	var lf labFlags
	lf.register(fs)
	typ := fs.String("type", "pvh", "guest type: pvh or pv")
	mem := fs.Int("memory", 64, "guest memory in MiB")
	cmdline := fs.String("cmdline", "", "guest kernel command line")
	ramdisk := fs.String("ramdisk", "", "guest initramfs")
	nics := fs.Int("nics", 0, "vifs on the lab bridge (dom0 is "+xenlab.Dom0Addr+"/24)")
	disks := fs.StringArray("disk", nil, "raw disk image as VDEV=PATH (e.g. xvda=disk.img), repeatable")
	guestTimeout := fs.Duration("timeout", 2*time.Minute, "how long the guest may run before it is destroyed")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return &exitError{2, nil}
	}
	cfg := xenlab.GuestConfig{
		Name: "guest", Type: xenlab.GuestType(*typ), Kernel: fs.Arg(0), Ramdisk: *ramdisk,
		Cmdline: *cmdline, MemoryMiB: *mem, NICs: *nics,
	}
	for _, d := range *disks {
		vdev, path, ok := strings.Cut(d, "=")
		if !ok {
			return &exitError{2, fmt.Errorf("xenlab: --disk %q: want VDEV=PATH", d)}
		}
		cfg.Disks = append(cfg.Disks, xenlab.Disk{Vdev: vdev, HostPath: path})
	}
	if _, err := cfg.XLConfig(); err != nil {
		return &exitError{2, err}
	}
	if _, err := os.Stat(cfg.Kernel); err != nil {
		return &exitError{2, fmt.Errorf("xenlab: image: %v", err)}
	}
	return runGuest(ctx, &lf, cfg, *guestTimeout, func(r xenlab.ShutdownReason) error {
		if r != xenlab.Poweroff {
			return fmt.Errorf("xenlab: guest shut down with reason %s, want poweroff", r)
		}
		return nil
	})
}

func cmdBaseline(ctx context.Context, args []string) error {
	fs := newFlagSet("baseline", "[flags]")
	var lf labFlags
	lf.register(fs)
	ip := fs.String("ip", "10.0.0.2/24", "eth0 address (empty: no network)")
	script := fs.String("script", "ping -c 3 "+xenlab.Dom0Addr, "sh script the guest runs before powering off")
	guestTimeout := fs.Duration("timeout", 2*time.Minute, "how long the guest may run before it is destroyed")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return &exitError{2, nil}
	}
	lab, done, err := startLab(ctx, &lf)
	if err != nil {
		return err
	}
	cfg := lab.BaselineConfig("baseline", *ip, *script)
	return runGuestIn(ctx, lab, done, cfg, *guestTimeout, func(g *xenlab.Guest, r xenlab.ShutdownReason) error {
		for _, line := range strings.Split(g.Console(), "\n") {
			if m := xenlab.BaselineExitRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil && m[1] != "0" {
				return fmt.Errorf("xenlab: baseline script exited %s", m[1])
			}
		}
		if r != xenlab.Poweroff {
			return fmt.Errorf("xenlab: baseline guest shut down with reason %s", r)
		}
		return nil
	})
}

func runGuest(ctx context.Context, lf *labFlags, cfg xenlab.GuestConfig, timeout time.Duration, check func(xenlab.ShutdownReason) error) error {
	lab, done, err := startLab(ctx, lf)
	if err != nil {
		return err
	}
	return runGuestIn(ctx, lab, done, cfg, timeout, func(_ *xenlab.Guest, r xenlab.ShutdownReason) error {
		return check(r)
	})
}

// runGuestIn creates the guest, streams its output until it shuts down, powers the lab
// off and prints the timings of the cycle.
func runGuestIn(ctx context.Context, lab *xenlab.Lab, done func(bool), cfg xenlab.GuestConfig, timeout time.Duration,
	check func(*xenlab.Guest, xenlab.ShutdownReason) error) (err error) {
	defer func() { done(err != nil) }()
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	g, err := lab.Create(gctx, cfg)
	if err != nil {
		return err
	}
	stopStream := g.Stream(func(l string) { fmt.Printf("xen| %s\n", l) }, func(l string) { fmt.Printf("con| %s\n", l) })
	reason, werr := g.WaitShutdown(gctx)
	time.Sleep(300 * time.Millisecond) // let xenconsoled flush the last console bytes
	stopStream()
	if werr != nil {
		return werr
	}
	ran := time.Since(g.Created)
	lab.Close()
	fmt.Fprintf(os.Stderr, "xenlab: guest %s (d%d): %s after %s; lab boot %s; cycle %s\n",
		g.Name, g.DomID, reason, ran.Round(10*time.Millisecond), lab.BootTime().Round(100*time.Millisecond),
		time.Since(processStart).Round(100*time.Millisecond))
	return check(g, reason)
}

func cmdShell(ctx context.Context, args []string) error {
	fs := newFlagSet("shell", "[flags] < commands")
	var lf labFlags
	lf.register(fs)
	cmdTimeout := fs.Duration("command-timeout", time.Minute, "deadline of each dom0 command")
	if err := parse(fs, args); err != nil {
		return err
	}
	lab, done, err := startLab(ctx, &lf)
	if err != nil {
		return err
	}
	failed := false
	defer func() { done(failed) }()
	fmt.Fprintf(os.Stderr, "xenlab: dom0 ready; guest files go in %s/share/images (dom0: %s/images)\n", lab.Dir(), xenlab.ShareMount)
	sc := bufio.NewScanner(os.Stdin)
	for {
		if isTerminal() {
			fmt.Fprint(os.Stderr, "dom0# ")
		}
		if !sc.Scan() {
			break
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, *cmdTimeout)
		r, err := lab.Run(cctx, line)
		cancel()
		if err != nil {
			failed = true
			return err
		}
		fmt.Print(r.Output)
		if r.ExitStatus != 0 {
			fmt.Fprintf(os.Stderr, "[exit %d]\n", r.ExitStatus)
		}
	}
	return nil
}

func isTerminal() bool {
	st, err := os.Stdin.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func cmdBuild(ctx context.Context, args []string) error {
	fs := newFlagSet("build", "[flags]")
	cacheDir := fs.String("cache-dir", "", "dom0 cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/unikgo/xenlab)")
	printKey := fs.Bool("print-key", false, "print the cache key (package versions + build assets) and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *printKey {
		key, err := xenlab.CacheKey(ctx)
		if err != nil {
			return err
		}
		fmt.Println(key)
		return nil
	}
	art, err := xenlab.EnsureArtifacts(ctx, xenlab.BuildOptions{CacheDir: *cacheDir, Progress: os.Stderr})
	if err != nil {
		return err
	}
	fmt.Println(art.Dir)
	return nil
}

// Command unikbuild turns an ordinary Go main package into a unikgo PVH image
// and runs it under QEMU, without any change to the package's source.
//
//	unikbuild build [-o IMAGE] [--cmdline "..."] [--strip] PKG
//	unikbuild run [--mem 128M] [--smp N] [--net user[,hostfwd=...]] [--disk FILE] [--ro-disk FILE] [--timeout D] IMAGE|PKG [-- ARGS]
//	unikbuild test [-run RE] [-v] [-bench RE] PKG...
//	unikbuild xl [--mem M] [--vif SPEC] [--disk SPEC] IMAGE
//	unikbuild inspect IMAGE
//
// Exit status: 0 on success; 1 when a build fails, a guest fails or hangs,
// or a test fails; 2 for usage errors and refusals (not a main package, cgo,
// wrong GOARCH or Go version, QEMU missing, not a unikgo image). For run, a
// guest that exits with status N makes unikbuild exit N.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"

	"github.com/spf13/pflag"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/builder/pvhnote"
	"github.com/unikgo/unikgo/builder/qemu"
)

// Exit statuses of unikbuild itself.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `unikbuild turns a Go main package into a unikgo PVH image and runs it.

Usage:
  unikbuild build [-o IMAGE] [--cmdline "..."] [--strip] PKG
  unikbuild run [--mem 128M] [--smp N] [--net user[,hostfwd=...]] [--disk FILE] [--ro-disk FILE] [--timeout D] IMAGE|PKG [-- ARGS]
  unikbuild test [-run RE] [-v] [-bench RE] PKG...
  unikbuild xl [--mem M] [--vif SPEC] [--disk SPEC] IMAGE
  unikbuild inspect IMAGE

Run "unikbuild COMMAND --help" for a command's flags.
`

// env is what a command sees of the outside world; tests substitute it.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	accel          *accelChoice
}

// accelChoice picks the QEMU accelerator once per unikbuild invocation and
// announces it in one line.
type accelChoice struct {
	once   sync.Once
	choice qemu.Choice
}

func (a *accelChoice) get(ctx context.Context, stderr io.Writer) qemu.Accel {
	a.once.Do(func() {
		a.choice = qemu.ChooseAccel(ctx, "", qemu.DefaultCacheDir())
		fmt.Fprintf(stderr, "unikbuild: %s\n", a.choice)
	})
	return a.choice.Accel
}

// command is one subcommand.
type command struct {
	name string
	run  func(ctx context.Context, e env, args []string) error
}

var commands = []command{
	{"build", runBuild},
	{"run", runRun},
	{"test", runTest},
	{"xl", runXL},
	{"inspect", runInspect},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := Main(ctx, env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// Main runs unikbuild with args and returns its exit status.
func Main(ctx context.Context, e env, args []string) int {
	if e.accel == nil {
		e.accel = new(accelChoice)
	}
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, usage)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return report(e, c.run(ctx, e, args[1:]))
		}
	}
	fmt.Fprintf(e.stderr, "unikbuild: unknown command %q: run unikbuild --help\n", args[0])
	return exitUsage
}

// exitError carries a specific exit status; its message (if any) has been
// printed or is printed by report.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is a command-line mistake (exit 2).
func usageError(format string, a ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, a...)}
}

// report prints err in one line (compile output excepted) and maps it to an
// exit status.
func report(e env, err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(e.stderr, "unikbuild: %s\n", ee.msg)
		}
		return ee.code
	}
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "unikbuild: %s\n", strings.TrimRight(err.Error(), "\n"))
	if isRefusal(err) {
		return exitUsage
	}
	return exitFailure // failed builds, hung guests, interrupts
}

// isRefusal reports errors that mean "unikbuild will not do this here".
func isRefusal(err error) bool {
	for _, target := range []error{
		builder.ErrNotMain, builder.ErrCgo, builder.ErrGOARCH, builder.ErrGoVersion,
		builder.ErrNoKernel, builder.ErrBadOptions, pvhnote.ErrNotPVHImage, qemu.ErrNotInstalled,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// newFlags returns a flag set that reports errors instead of exiting and
// prints its usage on --help.
func newFlags(e env, name, synopsis string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stdout, "Usage: unikbuild %s\n\nFlags:\n%s", synopsis, fs.FlagUsages())
	}
	return fs
}

// parse parses args; a flag error becomes a usage error (already printed by
// pflag) and --help a clean exit.
func parse(fs *pflag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pflag.ErrHelp):
		return &exitError{code: exitOK}
	default:
		return &exitError{code: exitUsage, msg: fmt.Sprintf("%s: %v (see unikbuild %s --help)", fs.Name(), err, fs.Name())}
	}
}

// Package qemu boots a unikgo PVH image under qemu-system-x86_64 and turns
// the guest's exit status, written to QEMU's isa-debug-exit port, back into a
// number.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The contract with the guest and with Debian.
const (
	// Binary is the QEMU system emulator unikbuild runs.
	Binary = "qemu-system-x86_64"
	// DebianPackage provides Binary on Debian.
	DebianPackage = "qemu-system-x86"
	// DebugExitPort is the I/O port of QEMU's isa-debug-exit device: the
	// guest writes its exit status N there and QEMU exits with (N<<1)|1.
	DebugExitPort = 0xf4
	// KernelFaultStatus is the status the unikgo kernel reports after it has
	// printed the details of a fault.
	KernelFaultStatus = 125
	// DefaultMemory and DefaultCPUs size the guest when Config leaves them
	// empty.
	DefaultMemory = "128M"
	DefaultCPUs   = 1
)

// Accel names a QEMU accelerator.
type Accel string

// The accelerators unikbuild picks from.
const (
	TCG Accel = "tcg"
	KVM Accel = "kvm"
)

// Config describes one guest run.
type Config struct {
	Image   string // PVH image path
	Cmdline string // kernel command line (-append)
	Memory  string // guest RAM, QEMU syntax ("128M"); DefaultMemory if empty
	CPUs    int    // vCPUs; DefaultCPUs if 0
	// Net is empty (no network) or a QEMU user-mode network spec: "user"
	// optionally followed by ",hostfwd=..." options.
	Net   string
	Disks []string // raw disk image files, attached as virtio-blk
	// ReadOnlyDisks are attached after Disks, as read-only virtio-blk
	// devices (VIRTIO_BLK_F_RO).
	ReadOnlyDisks []string
	Accel         Accel // TCG if empty
	// InstructionClock runs the guest's clock from QEMU's instruction
	// counter (-icount shift=0, TCG only: one nanosecond per instruction)
	// instead of the host's: guest time then leaves out what emulation
	// itself costs, chiefly translating each block of code the first time
	// it runs. x2APIC is off with it: QEMU cannot read the x2APIC timer
	// under icount ("Bad icount read").
	InstructionClock bool
	// Binary overrides the emulator (tests); Binary if empty.
	Binary string
	// Timeout kills a guest that runs longer; 0 means no limit.
	Timeout time.Duration
	// Stdin feeds the serial console; Stdout receives it. QEMU's own
	// messages go to Stderr. Nil means /dev/null.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exit is how a guest ended.
type Exit struct {
	// Status is the guest's exit status; meaningful unless PoweredOff.
	Status int
	// PoweredOff is set when QEMU stopped without a status: the guest
	// triple-faulted (with -no-reboot) or powered off through ACPI.
	PoweredOff bool
}

// ErrNotInstalled is returned when the emulator is not on PATH.
var ErrNotInstalled = errors.New(Binary + " not found on PATH: install the Debian package " + DebianPackage)

// TimeoutError reports a guest that was killed because it ran too long.
type TimeoutError struct{ After time.Duration }

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("guest still running after %v: killed it (raise --timeout if it needs longer)", e.After)
}

// Args returns QEMU's command line (without the program name).
func (c *Config) Args() ([]string, error) {
	mem := c.Memory
	if mem == "" {
		mem = DefaultMemory
	}
	cpus := c.CPUs
	if cpus == 0 {
		cpus = DefaultCPUs
	}
	if cpus < 0 {
		return nil, fmt.Errorf("qemu: %d vCPUs: want at least 1", cpus)
	}
	accel := c.Accel
	if accel == "" {
		accel = TCG
	}
	if c.Image == "" {
		return nil, errors.New("qemu: no image to boot")
	}
	cpu := "max"
	var icount []string
	if c.InstructionClock {
		if accel != TCG {
			return nil, fmt.Errorf("qemu: an instruction-counted clock needs the %s accelerator, not %s", TCG, accel)
		}
		cpu, icount = "max,-x2apic", []string{"-icount", "shift=0"}
	}
	args := []string{
		"-machine", "pc", "-accel", string(accel), "-cpu", cpu,
		"-m", mem, "-smp", fmt.Sprint(cpus),
		"-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
		"-device", fmt.Sprintf("isa-debug-exit,iobase=%#x,iosize=0x04", DebugExitPort),
		"-kernel", c.Image, "-append", c.Cmdline,
	}
	args = append(args, icount...)
	if c.Net != "" {
		kind, opts, _ := strings.Cut(c.Net, ",")
		if kind != "user" {
			return nil, fmt.Errorf("qemu: network %q: only user networking is supported (--net user[,hostfwd=...])", c.Net)
		}
		netdev := "user,id=net0"
		if opts != "" {
			netdev += "," + opts
		}
		args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0")
	}
	for i, d := range append(c.Disks[:len(c.Disks):len(c.Disks)], c.ReadOnlyDisks...) {
		if d == "" {
			return nil, errors.New("qemu: empty disk file name")
		}
		id := fmt.Sprintf("disk%d", i)
		ro := ""
		if i >= len(c.Disks) {
			ro = ",readonly=on"
		}
		args = append(args,
			"-drive", fmt.Sprintf("if=none,id=%s,format=raw,file=%s%s", id, escapeOption(d), ro),
			"-device", "virtio-blk-pci,drive="+id)
	}
	return args, nil
}

// escapeOption escapes a value inside a QEMU option list, where a comma
// separates options and ",," stands for a literal comma.
func escapeOption(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// LookPath finds the emulator, or returns ErrNotInstalled.
func LookPath(bin string) (string, error) {
	if bin == "" {
		bin = Binary
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		if bin != Binary {
			return "", fmt.Errorf("qemu: %s not found: %v", bin, err)
		}
		return "", ErrNotInstalled
	}
	return p, nil
}

// Run boots the guest and waits for it to end. A guest that outlives
// c.Timeout is killed and reported as a *TimeoutError.
func Run(ctx context.Context, c Config) (Exit, error) {
	args, err := c.Args()
	if err != nil {
		return Exit{}, err
	}
	bin, err := LookPath(c.Binary)
	if err != nil {
		return Exit{}, err
	}
	if _, err := os.Stat(c.Image); err != nil {
		return Exit{}, fmt.Errorf("qemu: image: %v", err)
	}
	runCtx := ctx
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(runCtx, bin, args...)
	cmd.Stdin = c.Stdin
	cmd.Stdout = c.Stdout
	errs := &stderrWatch{w: c.Stderr}
	cmd.Stderr = errs
	// SIGTERM first: QEMU then restores a terminal it put in raw mode for
	// -serial stdio. SIGKILL follows after WaitDelay.
	cmd.Cancel = func() error {
		errs.kill()
		return cmd.Process.Signal(syscall.SIGTERM)
	}
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	if runCtx.Err() != nil && ctx.Err() == nil {
		return Exit{}, &TimeoutError{After: c.Timeout}
	}
	if ctx.Err() != nil {
		return Exit{}, fmt.Errorf("guest stopped: unikbuild was interrupted (%w)", ctx.Err())
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return Exit{}, fmt.Errorf("qemu: starting %s: %v", bin, err)
		}
		code = ee.ExitCode()
	}
	return decode(code, errs.failure())
}

// decode maps QEMU's exit code to the guest's status. QEMU exits 1 both for
// guest status 0 and for its own errors; the second case is told apart by
// the error message QEMU printed (qemuErr).
func decode(code int, qemuErr string) (Exit, error) {
	switch {
	case code == 0:
		return Exit{PoweredOff: true}, nil
	case code == 1 && qemuErr != "":
		return Exit{}, fmt.Errorf("qemu failed: %s", qemuErr)
	case code > 0 && code&1 == 1:
		return Exit{Status: code >> 1}, nil
	case code < 0:
		return Exit{}, errors.New("qemu was killed by a signal")
	default:
		if qemuErr != "" {
			return Exit{}, fmt.Errorf("qemu failed (exit %d): %s", code, qemuErr)
		}
		return Exit{}, fmt.Errorf("qemu exited with %d, which is not a guest status", code)
	}
}

// stderrWatch forwards QEMU's stderr line by line and remembers its first
// error line (a line that is not a warning), which distinguishes QEMU
// failing from the guest exiting with status 0. Once unikbuild has told QEMU
// to stop (killing), QEMU's "terminating on signal" notice is dropped: the
// caller reports the timeout itself.
type stderrWatch struct {
	w       io.Writer
	mu      sync.Mutex
	partial []byte
	first   string
	killing bool
}

func (s *stderrWatch) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.line(s.partial[:i+1])
		s.partial = s.partial[i+1:]
	}
	return len(p), nil
}

// line handles one complete line (with its newline, if any).
func (s *stderrWatch) line(l []byte) {
	text := strings.TrimSpace(string(l))
	if s.killing && strings.Contains(text, "terminating on signal") {
		return
	}
	if s.first == "" && text != "" && !strings.Contains(text, "warning:") {
		s.first = text
	}
	if s.w != nil {
		s.w.Write(l)
	}
}

// kill marks that QEMU is being stopped on purpose.
func (s *stderrWatch) kill() {
	s.mu.Lock()
	s.killing = true
	s.mu.Unlock()
}

// failure flushes a final partial line and returns the first error line.
func (s *stderrWatch) failure() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.partial) > 0 {
		s.line(s.partial)
		s.partial = nil
	}
	return s.first
}

package xenlab

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configure a lab. The zero value is a usable default.
type Options struct {
	// Dir is the work directory (Xen's console log, QEMU's log, the 9p share with guest
	// logs). Empty: a new directory under os.TempDir(), kept after Close so logs can be
	// read; call RemoveDir to delete it.
	Dir string
	// CPUs is the number of QEMU vCPUs (default 1; the machines are shared and TCG
	// runs one host thread per vCPU).
	CPUs int
	// MemoryMiB is the QEMU machine's memory (default 3072); dom0 gets Dom0MemMiB of it
	// (default 1536) and guests the rest.
	MemoryMiB, Dom0MemMiB int
	// BootTimeout bounds Xen + dom0 boot until dom0's control loop is ready (default 3 min).
	BootTimeout time.Duration
	// Timeout is the lab's hard deadline from Start: QEMU is killed then, whatever runs
	// (default 20 min). Logs stay in Dir.
	Timeout time.Duration
	// QEMU is the emulator binary (default qemu-system-x86_64 from PATH).
	QEMU string
	// Progress receives progress lines (dom0 build steps, boot, shutdown). Nil: quiet.
	Progress io.Writer
	// Build configures the dom0 cache.
	Build BuildOptions
}

// Lab is a running Xen + dom0 under QEMU.
type Lab struct {
	opts      Options
	art       *Artifacts
	dir       string
	share     string
	progress  io.Writer
	started   time.Time
	bootTime  time.Duration
	qemu      *exec.Cmd
	qemuDone  chan struct{} // closed when QEMU has exited
	qemuErr   error
	listener  net.Listener
	sockDir   string // holds the control socket; removed by Close
	conn      net.Conn
	msgs      chan ctlMsg
	runMu     sync.Mutex // one command at a time on the control channel
	nextID    int
	deadline  *time.Timer
	closeOnce sync.Once
	closeErr  error
	brokenMu  sync.Mutex
	broken    error       // set when the control channel is unusable; see fail
	ready     bool        // dom0's control loop answered READY
	expired   atomic.Bool // the lab deadline fired and killed QEMU
}

// Result is the outcome of a dom0 command.
type Result struct {
	Output     string // combined stdout and stderr
	ExitStatus int    // the shell's exit status; 137 when killed at its timeout
}

// Start builds (or reuses) the cached dom0, boots Xen and dom0 under QEMU and waits until
// dom0 has xenstored, xenconsoled and the bridge up. The returned lab must be closed.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	l := &Lab{opts: opts, progress: opts.Progress}
	if l.progress == nil {
		l.progress = io.Discard
	}
	if opts.Build.Progress == nil {
		opts.Build.Progress = l.progress
	}
	setDefaults(&l.opts)
	if l.opts.Dom0MemMiB+minGuestMemMiB > l.opts.MemoryMiB {
		return nil, fmt.Errorf("xenlab: dom0 memory %d MiB leaves less than %d MiB of %d MiB for guests",
			l.opts.Dom0MemMiB, minGuestMemMiB, l.opts.MemoryMiB)
	}
	qemuBin, err := checkQEMU(ctx, l.opts.QEMU)
	if err != nil {
		return nil, err
	}
	art, err := EnsureArtifacts(ctx, opts.Build)
	if err != nil {
		return nil, err
	}
	l.art = art
	if err := l.makeDirs(); err != nil {
		return nil, err
	}
	l.started = time.Now()
	fmt.Fprintf(l.progress, "xenlab: booting Xen + dom0 (logs in %s)\n", l.dir)
	if err := l.startQEMU(qemuBin); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.waitReady(ctx); err != nil {
		l.Close()
		return nil, err
	}
	l.ready = true
	l.bootTime = time.Since(l.started)
	fmt.Fprintf(l.progress, "xenlab: dom0 ready in %s\n", l.bootTime.Round(100*time.Millisecond))
	return l, nil
}

// checkQEMU finds the emulator and refuses versions older than minQEMUMajor: bookworm's
// QEMU 7.2 crashes Xen's PV dom0 under TCG right after Xen hands over, which would
// otherwise surface as a confusing dom0 crash.
func checkQEMU(ctx context.Context, name string) (string, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("xenlab: %s not found; run qemu-tests/xenlab/install-deps.sh", name)
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("xenlab: %s --version: %v", bin, err)
	}
	major, minor, err := parseQEMUVersion(string(out))
	if err != nil {
		return "", fmt.Errorf("xenlab: cannot read the version of %s: %v", bin, err)
	}
	if major < minQEMUMajor {
		return "", fmt.Errorf("xenlab: %s is QEMU %d.%d; Xen's dom0 needs QEMU %d or newer: run qemu-tests/xenlab/install-deps.sh (installs it from bookworm-backports)",
			bin, major, minor, minQEMUMajor)
	}
	return bin, nil
}

// parseQEMUVersion reads major and minor from "qemu-system-x86_64 --version" output.
func parseQEMUVersion(out string) (major, minor int, err error) {
	const prefix = "QEMU emulator version "
	first := firstLine(out)
	if !strings.HasPrefix(first, prefix) {
		return 0, 0, fmt.Errorf("unexpected --version output %q", first)
	}
	if _, err := fmt.Sscanf(first[len(prefix):], "%d.%d", &major, &minor); err != nil {
		return 0, 0, fmt.Errorf("unexpected --version output %q", first)
	}
	return major, minor, nil
}

func setDefaults(o *Options) {
	if o.CPUs <= 0 {
		o.CPUs = defaultCPUs
	}
	if o.MemoryMiB <= 0 {
		o.MemoryMiB = defaultMemoryMiB
	}
	if o.Dom0MemMiB <= 0 {
		o.Dom0MemMiB = defaultDom0MemMiB
	}
	if o.BootTimeout <= 0 {
		o.BootTimeout = defaultBootTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultLabTimeout
	}
	if o.QEMU == "" {
		o.QEMU = "qemu-system-x86_64"
	}
}

func (l *Lab) makeDirs() error {
	l.dir = l.opts.Dir
	if l.dir == "" {
		d, err := os.MkdirTemp("", "xenlab-")
		if err != nil {
			return fmt.Errorf("xenlab: create work dir: %w", err)
		}
		l.dir = d
	}
	l.share = filepath.Join(l.dir, shareDirName)
	for _, d := range []string{
		filepath.Join(l.share, logsDirName, "console"),
		filepath.Join(l.share, imagesDirName),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("xenlab: create %s: %w", d, err)
		}
	}
	return nil
}

// qemuArgs is the emulator command line. "-cpu max" exposes SVM with nested paging, which
// Debian's Xen (no shadow paging) needs to build PVH guests under TCG. XSAVE is left out:
// with it, dom0's Go programs crashed now and then under load ("traceback did not
// unwind completely", corrupted data), which points at YMM state lost in Xen's context
// switches under TCG; without it Xen saves and restores with FXSAVE and nothing uses AVX.
func (l *Lab) qemuArgs(sock string) []string {
	xenCmdline := fmt.Sprintf("console=com1 com1=115200 dom0_mem=%dM,max:%dM guest_loglvl=all loglvl=all",
		l.opts.Dom0MemMiB, l.opts.Dom0MemMiB)
	// QEMU's multiboot -initrd takes "file args,file2"; commas inside are doubled.
	modules := l.art.Kernel + " console=hvc0 quiet," + l.art.Dom0Initrd
	return []string{
		"-accel", "tcg", "-cpu", "max,-xsave",
		"-m", strconv.Itoa(l.opts.MemoryMiB), "-smp", strconv.Itoa(l.opts.CPUs),
		"-nodefaults", "-display", "none", "-no-reboot", "-net", "none",
		"-chardev", "file,id=xencons,path=" + l.XenLogPath(),
		"-serial", "chardev:xencons",
		"-kernel", l.art.Xen, "-append", xenCmdline, "-initrd", modules,
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=ctl,path=" + sock,
		"-device", "virtserialport,bus=vser.0,chardev=ctl,name=" + ctlPortName,
		"-fsdev", "local,id=share,security_model=none,path=" + l.share,
		"-device", "virtio-9p-pci,fsdev=share,mount_tag=" + shareTag,
	}
}

func (l *Lab) startQEMU(bin string) error {
	// The lab listens and QEMU connects, so the channel exists before dom0 writes to it.
	sockDir, err := os.MkdirTemp("", "xenlab-ctl-")
	if err != nil {
		return fmt.Errorf("xenlab: %w", err)
	}
	sock := filepath.Join(sockDir, "ctl.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(sockDir)
		return fmt.Errorf("xenlab: listen on %s: %w", sock, err)
	}
	l.listener = ln
	l.sockDir = sockDir
	l.qemuDone = make(chan struct{})

	logf, err := os.Create(filepath.Join(l.dir, qemuLogName))
	if err != nil {
		close(l.qemuDone)
		return fmt.Errorf("xenlab: %w", err)
	}
	cmd := exec.Command(bin, l.qemuArgs(sock)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group so the whole tree can be killed; SIGKILL if we die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		close(l.qemuDone)
		return fmt.Errorf("xenlab: start %s: %w", bin, err)
	}
	l.qemu = cmd
	go func() {
		l.qemuErr = cmd.Wait()
		logf.Close()
		close(l.qemuDone)
	}()
	l.deadline = time.AfterFunc(l.opts.Timeout, func() {
		fmt.Fprintf(l.progress, "xenlab: lab deadline %s reached; killing QEMU (logs in %s)\n", l.opts.Timeout, l.dir)
		l.expired.Store(true)
		l.kill()
	})

	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() { c, err := ln.Accept(); ch <- accepted{c, err} }()
	select {
	case a := <-ch:
		if a.err != nil {
			return fmt.Errorf("xenlab: accept QEMU's control connection: %w", a.err)
		}
		l.conn = a.c
	case <-l.qemuDone:
		return fmt.Errorf("xenlab: QEMU exited at start: %s", l.tail(filepath.Join(l.dir, qemuLogName), 3))
	case <-time.After(30 * time.Second):
		return fmt.Errorf("xenlab: QEMU did not connect its control socket within 30s; see %s", filepath.Join(l.dir, qemuLogName))
	}
	l.msgs = make(chan ctlMsg, 16)
	go ctlReader(l.conn, l.msgs)
	return nil
}

func (l *Lab) waitReady(ctx context.Context) error {
	t := time.NewTimer(l.opts.BootTimeout)
	defer t.Stop()
	for {
		select {
		case m, ok := <-l.msgs:
			if !ok {
				if l.expired.Load() {
					return l.deadlineErr()
				}
				return fmt.Errorf("xenlab: dom0 boot failed (control channel closed); last Xen console lines: %s", l.tail(l.XenLogPath(), 5))
			}
			switch m.verb {
			case "READY":
				return nil
			case "FAIL":
				return fmt.Errorf("xenlab: dom0 setup failed at %q; see %s", m.rest, l.XenLogPath())
			}
		case <-l.qemuDone:
			if l.expired.Load() {
				return l.deadlineErr()
			}
			return fmt.Errorf("xenlab: QEMU exited during boot (%v); last Xen console lines: %s", l.qemuErr, l.tail(l.XenLogPath(), 5))
		case <-t.C:
			return fmt.Errorf("xenlab: dom0 not ready within %s; see %s", l.opts.BootTimeout, l.XenLogPath())
		case <-ctx.Done():
			return fmt.Errorf("xenlab: waiting for dom0: %w", ctx.Err())
		}
	}
}

func (l *Lab) deadlineErr() error {
	return fmt.Errorf("xenlab: lab deadline %s reached, QEMU killed; logs in %s", l.opts.Timeout, l.dir)
}

// Run runs a shell script in dom0 and returns its output and exit status. The script is
// killed in dom0 when ctx's deadline passes (default one minute). An error means the
// command could not be run or answered (a non-zero exit status is not an error).
func (l *Lab) Run(ctx context.Context, script string) (Result, error) {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	if err := l.brokenErr(); err != nil {
		return Result{}, err
	}
	timeout := defaultRunTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	secs := int(timeout.Seconds())
	if secs < 1 {
		return Result{}, fmt.Errorf("xenlab: run in dom0: %w", context.DeadlineExceeded)
	}
	l.nextID++
	id := l.nextID
	if _, err := io.WriteString(l.conn, runLine(id, secs, script)); err != nil {
		return Result{}, l.fail(fmt.Errorf("xenlab: control channel write failed (%v); dom0 is gone, see %s", err, l.XenLogPath()))
	}
	// dom0 kills the script at secs; allow it a little more to report back.
	grace := time.NewTimer(timeout + 15*time.Second)
	defer grace.Stop()
	var res Result
	for {
		select {
		case m, ok := <-l.msgs:
			if !ok {
				return Result{}, l.fail(fmt.Errorf("xenlab: control channel closed while running %q; see %s", firstLine(script), l.XenLogPath()))
			}
			if m.id != id {
				continue // a late answer to an abandoned request
			}
			switch m.verb {
			case "OUT":
				res.Output = m.rest
			case "END":
				res.ExitStatus, _ = strconv.Atoi(strings.TrimSpace(m.rest))
				return res, nil
			}
		case <-grace.C:
			return Result{}, l.fail(fmt.Errorf("xenlab: dom0 did not answer %q within %s; dom0 hung, see %s", firstLine(script), timeout+15*time.Second, l.XenLogPath()))
		case <-l.qemuDone:
			return Result{}, l.fail(fmt.Errorf("xenlab: QEMU exited while running %q; see %s", firstLine(script), l.XenLogPath()))
		}
	}
}

// fail marks the control channel unusable (dom0 hung or gone) and returns err.
func (l *Lab) fail(err error) error {
	if l.expired.Load() {
		err = l.deadlineErr()
	}
	l.brokenMu.Lock()
	defer l.brokenMu.Unlock()
	if l.broken == nil {
		l.broken = err
	}
	return l.broken
}

func (l *Lab) brokenErr() error {
	l.brokenMu.Lock()
	defer l.brokenMu.Unlock()
	return l.broken
}

// MustSucceed runs a script like Run and turns a non-zero exit status into an error that
// carries the output.
func (l *Lab) MustSucceed(ctx context.Context, script string) (string, error) {
	r, err := l.Run(ctx, script)
	if err != nil {
		return "", err
	}
	if r.ExitStatus != 0 {
		return r.Output, fmt.Errorf("xenlab: dom0 command %q exited %d: %s", firstLine(script), r.ExitStatus, strings.TrimSpace(r.Output))
	}
	return r.Output, nil
}

// CopyIn copies a host file into the share and returns its path as dom0 sees it.
func (l *Lab) CopyIn(hostPath, name string) (string, error) {
	dst := filepath.Join(l.share, imagesDirName, name)
	if err := copyFile(hostPath, dst); err != nil {
		return "", fmt.Errorf("xenlab: copy %s into the lab: %w", hostPath, err)
	}
	return ShareMount + "/" + imagesDirName + "/" + name, nil
}

// CopyOut copies the lab's file name (as given to CopyIn; a guest's disk
// is "<guest>.disk-<vdev>") back to hostPath, e.g. a disk the guest wrote.
func (l *Lab) CopyOut(name, hostPath string) error {
	if err := copyFile(filepath.Join(l.share, imagesDirName, name), hostPath); err != nil {
		return fmt.Errorf("xenlab: copy %s out of the lab: %w", name, err)
	}
	return nil
}

// Dir is the lab's work directory; XenLogPath is Xen's console log (COM1) in it.
func (l *Lab) Dir() string        { return l.dir }
func (l *Lab) XenLogPath() string { return filepath.Join(l.dir, xenLogName) }

// XenLog returns Xen's console (COM1) so far: hypervisor, dom0 kernel and guests' "(dN)" lines.
func (l *Lab) XenLog() string { return readText(l.XenLogPath()) }

// BootTime is how long Xen + dom0 took from QEMU start to dom0's control loop.
func (l *Lab) BootTime() time.Duration { return l.bootTime }

// Artifacts are the cached boot files this lab runs.
func (l *Lab) Artifacts() *Artifacts { return l.art }

// Close powers dom0 off (destroying any guests), waits briefly, then kills QEMU's process
// group. It always leaves no QEMU behind; logs stay in Dir. The error says when dom0 had
// to be killed. Safe to call more than once.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		if l.deadline != nil {
			l.deadline.Stop()
		}
		if l.qemuDone != nil {
			if !l.ready || l.brokenErr() != nil {
				l.kill() // nobody to power off cleanly
			} else {
				fmt.Fprintf(l.progress, "xenlab: powering dom0 off\n")
				_, _ = io.WriteString(l.conn, "POWEROFF\n")
			}
			select {
			case <-l.qemuDone:
			case <-time.After(shutdownGrace):
				fmt.Fprintf(l.progress, "xenlab: dom0 did not power off within %s; killing QEMU\n", shutdownGrace)
				l.closeErr = fmt.Errorf("xenlab: dom0 did not power off within %s; QEMU killed (logs in %s)", shutdownGrace, l.dir)
				l.kill()
				<-l.qemuDone
			}
		}
		if l.conn != nil {
			l.conn.Close()
		}
		if l.listener != nil {
			l.listener.Close()
		}
		if l.sockDir != "" {
			os.RemoveAll(l.sockDir)
		}
	})
	return l.closeErr
}

// RemoveDir deletes the work directory (after Close).
func (l *Lab) RemoveDir() error { return os.RemoveAll(l.dir) }

func (l *Lab) kill() {
	if l.qemu != nil && l.qemu.Process != nil {
		_ = syscall.Kill(-l.qemu.Process.Pid, syscall.SIGKILL)
	}
}

// tail returns the last n non-empty lines of a file, joined with " | ".
func (l *Lab) tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	var lines []string
	for _, s := range strings.Split(strings.ReplaceAll(string(data), "\r", ""), "\n") {
		if strings.TrimSpace(s) != "" {
			lines = append(lines, s)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "(empty " + path + ")"
	}
	return strings.Join(lines, " | ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

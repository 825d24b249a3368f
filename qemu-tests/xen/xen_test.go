// Package xen_test runs unikgo images as PVH guests on real Xen (the lab in
// qemu-tests/xenlab: Xen 4.17 and a Linux dom0 under QEMU) and checks what
// dom0 sees: the guest's PV console log and its shutdown reason.
//
// One lab boot is shared by all tests. The tests need the lab's
// dependencies (qemu-tests/xenlab/install-deps.sh, run by scripts/setup);
// they fail, not skip, without them.
package xen_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/qemu-tests/xenlab"
)

var (
	labOnce sync.Once
	shared  *xenlab.Lab
	labErr  error
	imgDir  string
	labMu   sync.Mutex // one guest at a time: the lab has one vCPU
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "unikgo-xen-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	imgDir = d
	code := m.Run()
	if shared != nil {
		shared.Close()
		if code == 0 {
			shared.RemoveDir()
		} else {
			fmt.Fprintln(os.Stderr, "xen: lab logs kept in", shared.Dir())
		}
	}
	os.RemoveAll(d)
	os.Exit(code)
}

func lab(t testing.TB) *xenlab.Lab {
	t.Helper()
	labOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		shared, labErr = xenlab.Start(ctx, xenlab.Options{Progress: os.Stderr, Timeout: 40 * time.Minute})
	})
	if labErr != nil {
		t.Fatalf("starting the Xen lab: %v (install its dependencies with scripts/setup)", labErr)
	}
	return shared
}

func image(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(imgDir, filepath.Base(pkg)+".img")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := builder.Build(ctx, builder.BuildOptions{Package: pkg, Dir: "../..", Output: out}); err != nil {
		t.Fatalf("building %s: %v", pkg, err)
	}
	return out
}

// runGuest boots img as a PVH guest and waits for it to shut down.
func runGuest(t *testing.T, name, img, cmdline string, memMiB int, timeout time.Duration) (string, xenlab.ShutdownReason) {
	t.Helper()
	l := lab(t)
	labMu.Lock()
	defer labMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	g, err := l.Create(ctx, xenlab.GuestConfig{Name: name, Type: xenlab.PVH, Kernel: img, Cmdline: cmdline, MemoryMiB: memMiB})
	if err != nil {
		t.Fatalf("creating guest %s: %v", name, err)
	}
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		g.Destroy(context.Background())
		t.Fatalf("guest %s did not shut down: %v\nconsole:\n%s", name, err, g.Console())
	}
	return g.Console(), reason
}

// stallAfter is how long a lab test waits for a guest's next console line
// before it records Xen's view of the guest's events (Guest.EventState)
// and goes on waiting: a stall's cause is then in the report, taken while
// the guest still waits, not after it gave up.
const stallAfter = 90 * time.Second

// waitConsole waits like g.WaitConsole, logging the guest's event state
// once if the line is stallAfter late.
func waitConsole(ctx context.Context, t *testing.T, g *xenlab.Guest, re *regexp.Regexp) (string, error) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stallAfter)
	line, err := g.WaitConsole(sctx, re)
	cancel()
	if err == nil || ctx.Err() != nil {
		return line, err
	}
	ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
	t.Logf("no %q on %s's console after %v; Xen's view of its events:\n%s", re, g.Name, stallAfter, g.EventState(ectx))
	ecancel()
	return g.WaitConsole(ctx, re)
}

func expect(t *testing.T, console string, reason, want xenlab.ShutdownReason, lines ...string) {
	t.Helper()
	if reason != want {
		t.Errorf("shutdown reason %v, want %v", reason, want)
	}
	for _, l := range lines {
		if !strings.Contains(console, l) {
			t.Errorf("PV console lacks %q", l)
		}
	}
	if t.Failed() {
		t.Logf("PV console:\n%s", console)
	}
}

func TestHelloPVH(t *testing.T) {
	out, reason := runGuest(t, "hello", image(t, "./examples/hello"), "hello a b", 64, 3*time.Minute)
	expect(t, out, reason, xenlab.Poweroff,
		"unikgo: 64 MiB, 1 vCPU, xen, kernel ready in", "Hello from unikgo!\nargs: [a b]\n", "unikgo: exit status 0\n")
}

// TestStrayInterruptPVH: on Xen too an interrupt raised while interrupts
// are off is noted and handled later (the timer's as a LAPIC vector still
// in service; the event upcall's, on Xen's callback vector, is left to
// Xen, which delivers it again while events are pending), and the program
// runs as usual.
func TestStrayInterruptPVH(t *testing.T) {
	out, reason := runGuest(t, "stray", image(t, "./examples/hello"), "unikgo.straytest hello", 64, 3*time.Minute)
	expect(t, out, reason, xenlab.Poweroff, "Hello from unikgo!", "unikgo: exit status 0\n")
	// Two raised, and any the nested setup delivered against IF itself.
	m := regexp.MustCompile(`unikgo: (\d+) interrupts came while interrupts were off \((\d+) LAPIC vectors handled late\)\n`).FindStringSubmatch(out)
	if m == nil {
		t.Errorf("the kernel did not count the interrupts raised:\n%s", out)
	} else if n, _ := strconv.Atoi(m[1]); n < 2 {
		t.Errorf("the kernel did not count the two interrupts raised:\n%s", out)
	} else if late, _ := strconv.Atoi(m[2]); late < 1 {
		t.Errorf("the kernel did not handle the timer's vector late:\n%s", out)
	}
}

// TestLostFramePVH: on Xen too, an interrupt taken on the interrupt
// stack's top frame while the kernel idles (unikgo.losttest: what a second
// delivery of one just taken from HLT does, seen in the lab as a guest
// spinning at its upcall's entry stub) resumes the idle loop, and the
// program runs as usual.
func TestLostFramePVH(t *testing.T) {
	out, reason := runGuest(t, "lost", image(t, "./qemu-tests/boot/testdata/clock"), "unikgo.losttest clock", 64, 3*time.Minute)
	expect(t, out, reason, xenlab.Poweroff, "unikgo: an interrupt came while the CPU was entering another and overwrote its frame; the idle loop it had interrupted was resumed",
		"unikgo: exit status 0\n")
	if n := strings.Count(out, "\nclock: "); n != 21 {
		t.Errorf("%d clock lines, want 21:\n%s", n, out)
	}
}

// A non-zero exit status is printed and ends the domain with reason crash,
// so xl's on_crash policy applies.
func TestExitStatusPVH(t *testing.T) {
	out, reason := runGuest(t, "hello3", image(t, "./examples/hello"), "unikgo.quiet hello 3", 64, 3*time.Minute)
	expect(t, out, reason, xenlab.Crash, "Hello from unikgo!", "unikgo: exit status 3\n")
}

// A nil dereference on Xen is Go's usual panic: page faults (whose CR2 the
// nested setup loses, see kernel/insn) still become SIGSEGV correctly.
func TestNilDereferencePVH(t *testing.T) {
	out, reason := runGuest(t, "nilderef", image(t, "./qemu-tests/boot/testdata/nilderef"), "nilderef", 64, 3*time.Minute)
	expect(t, out, reason, xenlab.Crash,
		"panic: runtime error: invalid memory address or nil pointer dereference", "[signal SIGSEGV", "unikgo: exit status 2\n")
}

func TestStressPVH(t *testing.T) {
	out, reason := runGuest(t, "stress", image(t, "./qemu-tests/boot/testdata/stress"), "stress", 128, 15*time.Minute)
	expect(t, out, reason, xenlab.Poweroff, "stress: 10000 goroutines ok", "stress: ok in", "unikgo: exit status 0\n")
}

// TestXenstoreAndShutdownPVH covers the guest's xenstore client against
// dom0's oxenstored (reads, a write dom0 sees, a watch fired by dom0, a
// transaction retried on conflict) and `xl shutdown` reaching the program
// as SIGTERM, ending it cleanly with reason poweroff within a second of
// guest time.
func TestXenstoreAndShutdownPVH(t *testing.T) {
	l := lab(t)
	img := image(t, "./qemu-tests/xen/testdata/xenstore")
	labMu.Lock()
	defer labMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g, err := l.Create(ctx, xenlab.GuestConfig{Name: "xs", Type: xenlab.PVH, Kernel: img, Cmdline: "xenstore", MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(context.Background())
	wait := func(re string) string {
		t.Helper()
		line, err := waitConsole(ctx, t, g, regexp.MustCompile(re))
		if err != nil {
			t.Fatalf("waiting for %q: %v\nconsole:\n%s", re, err, g.Console())
		}
		return line
	}
	line := wait(`xenstore: domid \d+ name \S+`)
	if want := fmt.Sprintf("xenstore: domid %d name xs", g.DomID); !strings.Contains(line, want) {
		t.Errorf("guest reported %q, want %q", line, want)
	}
	wait(`xenstore: waiting for data/command`)
	home := fmt.Sprintf("/local/domain/%d", g.DomID)
	out, err := l.MustSucceed(ctx, "xenstore-read "+home+"/data/greeting")
	if err != nil || strings.TrimSpace(out) != "hello from unikgo" {
		t.Errorf("dom0 read data/greeting = %q, %v", out, err)
	}
	// The guest's CLOCK_REALTIME (Xen's wall clock plus Xen system time)
	// agrees with dom0's: it was written before dom0 reads it, and not
	// more than a generous minute earlier on this slow nested machine.
	out, err = l.MustSucceed(ctx, "echo $(xenstore-read "+home+"/data/time) $(date +%s%N)")
	if f := strings.Fields(out); err != nil || len(f) != 2 {
		t.Errorf("dom0 read data/time and date: %q, %v", out, err)
	} else {
		g, _ := strconv.ParseInt(f[0], 10, 64)
		d, _ := strconv.ParseInt(f[1], 10, 64)
		if lag := time.Duration(d - g); lag < -time.Second || lag > time.Minute {
			t.Errorf("guest wall clock %v, dom0's %v read after it: off by %v", time.Unix(0, g), time.Unix(0, d), lag)
		}
	}
	if _, err := l.MustSucceed(ctx, "xenstore-write "+home+"/data/command go"); err != nil {
		t.Fatal(err)
	}
	wait(`xenstore: counter = 101 after 2 attempts`)
	if out, err := l.MustSucceed(ctx, "xenstore-read "+home+"/data/counter"); err != nil || strings.TrimSpace(out) != "101" {
		t.Errorf("dom0 read data/counter = %q, %v", out, err)
	}
	wait(`xenstore: serving until SIGTERM`)
	// The stall report works on a live guest: Xen's view of its ports and
	// vCPU, and where the vCPU is.
	st := g.EventState(ctx)
	t.Logf("a live guest's stall report:\n%s", st)
	for _, want := range []string{"port [p/m/s]", "upcall_pend=", "rip"} {
		if !strings.Contains(st, want) {
			t.Errorf("EventState lacks %q:\n%s", want, st)
		}
	}
	// The 'q' key raised VIRQ_DEBUG, which the kernel answers with its
	// threads on the console.
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	if _, err := g.WaitConsole(dctx, regexp.MustCompile(`unikgo:   thread \d+ tid \d+ blocked`)); err != nil {
		t.Errorf("no thread dump after VIRQ_DEBUG: %v\nconsole:\n%s", err, g.Console())
	} else {
		t.Logf("its kernel's dump:\n%s", strings.Join(regexp.MustCompile(`(?m)^unikgo: (state|  ).*$`).FindAllString(g.Console(), -1), "\n"))
	}
	dcancel()
	if _, err := l.MustSucceed(ctx, "xl shutdown xs"); err != nil {
		t.Fatal(err)
	}
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		t.Fatalf("after xl shutdown: %v\nconsole:\n%s", err, g.Console())
	}
	con := g.Console()
	expect(t, con, reason, xenlab.Poweroff, "unikgo: poweroff requested by the toolstack: sending SIGTERM", "xenstore: got SIGTERM, exiting cleanly")
	m := regexp.MustCompile(`unikgo: exit status 0 \((\d+) ms after the shutdown request\)`).FindStringSubmatch(con)
	if m == nil {
		t.Fatalf("no clean exit line\nconsole:\n%s", con)
	}
	if ms, _ := strconv.Atoi(m[1]); ms >= 1000 {
		t.Errorf("program exited %d ms (guest time) after xl shutdown, want < 1000", ms)
	}
}

// TestVchanInteropPVH runs testdata/vchan against dom0's libxenvchan
// (vchan-socket-proxy), with the guest as server and then as client.
func TestVchanInteropPVH(t *testing.T) {
	l := lab(t)
	img := image(t, "./qemu-tests/xen/testdata/vchan")
	labMu.Lock()
	defer labMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	g, err := l.Create(ctx, xenlab.GuestConfig{Name: "vchan", Type: xenlab.PVH, Kernel: img, Cmdline: "vchan", MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(context.Background())
	wait := func(re string) string {
		t.Helper()
		line, err := waitConsole(ctx, t, g, regexp.MustCompile(`(?:`+re+`)|vchan: FAIL: .*`))
		if err != nil || strings.Contains(line, "FAIL") {
			t.Fatalf("waiting for %q: %q, %v\nconsole:\n%s", re, line, err, g.Console())
		}
		return line
	}
	wait(`vchan: domain \d+ listening on port 5000`)

	// dom0 as client: one line in, the pong and the payload out. The
	// proxy exits when the guest closes the vchan.
	run := func(script string) string {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Minute)
		defer rcancel()
		out, err := l.MustSucceed(rctx, script)
		if err != nil {
			t.Fatalf("%v\nconsole:\n%s", err, g.Console())
		}
		return out
	}
	out := run(fmt.Sprintf(`set -e
p=/local/domain/%[1]d/data/vchan/0/5000
rm -f /tmp/vin /tmp/vout; mkfifo /tmp/vin
vchan-socket-proxy -m client %[1]d $p - </tmp/vin >/tmp/vout &
pid=$!
exec 3>/tmp/vin
printf 'hello from dom0\n' >&3
wait $pid
exec 3>&-
head -n 1 /tmp/vout
tail -n +2 /tmp/vout | sha256sum
`, g.DomID))
	payload := make([]byte, 200000)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	want := fmt.Sprintf("pong hello from dom0\n%x  -\n", sha256.Sum256(payload))
	if out != want {
		t.Errorf("dom0's client received:\n%s\nwant:\n%s", out, want)
	}
	wait(`vchan: server sent pong and 200000 bytes`)

	// dom0 as server: a random blob out, the guest's count back.
	out = run(fmt.Sprintf(`set -e
p=/local/domain/0/data/vchan/%[1]d/5001
head -c 65536 /dev/urandom >/tmp/blob
rm -f /tmp/sin /tmp/sout; mkfifo /tmp/sin
vchan-socket-proxy -m server %[1]d $p - </tmp/sin >/tmp/sout &
pid=$!
exec 3>/tmp/sin
cat /tmp/blob >&3
wait $pid
exec 3>&-
sha256sum </tmp/blob
cat /tmp/sout
`, g.DomID))
	lines := strings.SplitN(out, "\n", 2)
	sum := strings.TrimSuffix(lines[0], "  -")
	if len(lines) < 2 || lines[1] != "got 65536 bytes\n" {
		t.Errorf("dom0's server received %q, want the guest's count", out)
	}
	wait(`vchan: client got 65536 bytes sha256 ` + sum)
	wait(`vchan: grant copy ok; a bad ref fails with "gnttab: copy 1: invalid grant reference"`)
	wait(`vchan: done`)
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, g.Console())
	}
	expect(t, g.Console(), reason, xenlab.Poweroff, "vchan: done")
}

// TestQubesDBOverLibxenvchan runs the VM side of QubesDB in a guest
// against qubesdbd in dom0, joined by dom0's real libxenvchan
// (vchan-socket-proxy in server mode on port 111, as qubesdb-daemon uses).
func TestQubesDBOverLibxenvchan(t *testing.T) {
	l := lab(t)
	img := image(t, "./qemu-tests/xen/testdata/qubesdb")
	daemon := filepath.Join(imgDir, "qubesdbd")
	build := exec.Command("go", "build", "-o", daemon, "./qemu-tests/xen/testdata/qubesdbd")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building qubesdbd: %v\n%s", err, out)
	}
	bin, err := l.CopyIn(daemon, "qubesdbd")
	if err != nil {
		t.Fatal(err)
	}
	labMu.Lock()
	defer labMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	g, err := l.Create(ctx, xenlab.GuestConfig{Name: "qdb", Type: xenlab.PVH, Kernel: img, Cmdline: "qubesdb", MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy(context.Background())
	run := func(script string) string {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer rcancel()
		out, err := l.MustSucceed(rctx, script)
		if err != nil {
			t.Fatalf("%v\nconsole:\n%s", err, g.Console())
		}
		return out
	}
	defer l.Run(context.Background(), `echo quit >/tmp/qubesdb.ctl & sleep 1; kill %1 2>/dev/null; pkill vchan-socket-proxy; true`)
	run(fmt.Sprintf(`set -e
rm -f /tmp/qubesdb.ctl /tmp/qubesdb.log
cp %s /tmp/qubesdbd && chmod +x /tmp/qubesdbd
/tmp/qubesdbd --set /name=qdb --set /qubes-ip=10.137.0.5 --set /qubes-gateway=10.137.0.1 >/tmp/qubesdb.log 2>&1 &
i=0; until grep -q ready /tmp/qubesdb.log; do i=$((i+1)); [ $i -lt 100 ] || { cat /tmp/qubesdb.log; exit 1; }; sleep 0.1; done
vchan-socket-proxy -m server %d /local/domain/0/data/vchan/%d/111 /tmp/qubesdb.sock >/tmp/proxy.log 2>&1 &
`, bin, g.DomID, g.DomID))
	wait := func(re string) string {
		t.Helper()
		line, err := waitConsole(ctx, t, g, regexp.MustCompile(`(?:`+re+`)|qubesdb: FAIL: .*`))
		if err != nil || strings.Contains(line, "FAIL") {
			t.Fatalf("waiting for %q: %q, %v\nconsole:\n%s\ndom0:\n%s", re, line, err, g.Console(), run("cat /tmp/qubesdb.log /tmp/proxy.log"))
		}
		return line
	}
	wait(`qubesdb: watching /qubes-firewall/`)
	for _, want := range []string{
		"qubesdb: synced 3 entries",
		`qubesdb: /name = "qdb" (true)`,
		`qubesdb: /qubes-ip = "10.137.0.5" (true)`,
		`qubesdb: /qubes-gateway = "10.137.0.1" (true)`,
	} {
		if !strings.Contains(g.Console(), want) {
			t.Errorf("console lacks %q", want)
		}
	}
	run(`echo 'write /qubes-firewall/10.137.0.5/0000 action=accept proto=tcp dstports=443-443' >/tmp/qubesdb.ctl`)
	wait(`qubesdb: pushed /qubes-firewall/10.137.0.5/0000 = "action=accept proto=tcp dstports=443-443"`)
	run(`echo 'rm /qubes-firewall/10.137.0.5/0000' >/tmp/qubesdb.ctl`)
	wait(`qubesdb: removed /qubes-firewall/10.137.0.5/0000`)
	wait(`qubesdb: done`)
	if reason, err := g.WaitShutdown(ctx); err != nil || reason != xenlab.Poweroff {
		t.Fatalf("shutdown %v, %v\nconsole:\n%s", reason, err, g.Console())
	}
	log := run("sleep 1; cat /tmp/qubesdb.log")
	for _, want := range []string{
		"vm connected",
		"event write /qubes-service/unikgo = 1",
		"write /qubes-firewall/10.137.0.5/0000 action=accept proto=tcp dstports=443-443: ok",
		"rm /qubes-firewall/10.137.0.5/0000: ok",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("qubesdbd's log lacks %q:\n%s", want, log)
		}
	}
}

// TestDisksPVH is the storage acceptance on Xen: through Linux's blkback,
// the guest writes 64 MiB of seeded random data to /dev/xvda with package
// os, flushes, reads it back and verifies it; after the domain is gone,
// dom0 finds the same SHA-256 on the backing file, so the acknowledged,
// flushed writes were not lost. The read-only /dev/xvdb refuses writes
// with EROFS, and a read at the end of the disk is EOF.
func TestDisksPVH(t *testing.T) {
	l := lab(t)
	img := image(t, "./qemu-tests/xen/testdata/disk")
	dir := t.TempDir()
	rw, ro := filepath.Join(dir, "rw.img"), filepath.Join(dir, "ro.img")
	if err := os.WriteFile(rw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(rw, 80<<20); err != nil {
		t.Fatal(err)
	}
	roData := make([]byte, 1<<20)
	copy(roData, "read-only disk!\n")
	if err := os.WriteFile(ro, roData, 0o644); err != nil {
		t.Fatal(err)
	}
	labMu.Lock()
	defer labMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cfg := xenlab.GuestConfig{
		Name: "disk", Type: xenlab.PVH, Kernel: img, MemoryMiB: 128,
		Cmdline: "DISK=/dev/xvda RODISK=/dev/xvdb disk 64 7",
		Disks:   []xenlab.Disk{{HostPath: rw, Vdev: "xvda"}, {HostPath: ro, Vdev: "xvdb", ReadOnly: true}},
	}
	g, err := l.Create(ctx, cfg)
	if err != nil {
		t.Fatalf("creating guest: %v", err)
	}
	// Watched for a stall: the copy takes well under a minute.
	waitConsole(ctx, t, g, regexp.MustCompile(`disk: 64 MiB written|disk: FAIL`))
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		g.Destroy(context.Background())
		t.Fatalf("guest did not shut down: %v\nconsole:\n%s", err, g.Console())
	}
	con := g.Console()
	expect(t, con, reason, xenlab.Poweroff, "disk: /dev/xvda is 83886080 bytes", "disk: 64 MiB written, flushed and verified",
		"disk: /dev/xvdb refuses writes", "disk: ok")
	m := regexp.MustCompile(`disk: sha256 ([0-9a-f]{64})`).FindStringSubmatch(con)
	if m == nil {
		t.Fatalf("no sha256 line\nconsole:\n%s", con)
	}
	if l := regexp.MustCompile(`disk: 64 MiB .*`).FindString(con); l != "" {
		t.Log(l)
	}
	// The domain is destroyed (on_poweroff): blkback has let go of the file.
	out, err := l.MustSucceed(ctx, "dd if="+cfg.DiskPath("xvda")+" bs=1M count=64 status=none | sha256sum")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); len(got) == 0 || got[0] != m[1] {
		t.Errorf("dom0's sha256 of the backing file's first 64 MiB = %q, the guest wrote %s", out, m[1])
	}
}

package xenlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The lab tests share one lab boot (started by the first test that needs it and closed
// in TestMain): booting Xen + dom0 under TCG is the expensive part of a cycle.
var (
	sharedOnce sync.Once
	shared     *Lab
	sharedErr  error
	labStart   time.Time
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
		if p := qemuProcsUsing(shared.Dir()); len(p) != 0 {
			fmt.Fprintf(os.Stderr, "xenlab: FAIL: QEMU processes left after Close: %v\n", p)
			code = 1
		}
		fmt.Fprintf(os.Stderr, "xenlab: shared lab: boot %s, up %s, logs in %s\n",
			shared.BootTime().Round(100*time.Millisecond), time.Since(labStart).Round(100*time.Millisecond), shared.Dir())
		if code == 0 {
			shared.RemoveDir()
		}
	}
	os.Exit(code)
}

// lab returns the shared lab, booting it on first use. A missing dependency fails the
// test (CI must never silently skip the real lab).
func lab(t *testing.T) *Lab {
	t.Helper()
	sharedOnce.Do(func() {
		labStart = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx, Options{Progress: os.Stderr, Timeout: 18 * time.Minute})
	})
	if sharedErr != nil {
		t.Fatalf("%v (install the lab's dependencies with qemu-tests/xenlab/install-deps.sh)", sharedErr)
	}
	return shared
}

func TestLabBoots(t *testing.T) {
	l := lab(t)
	t.Logf("Xen + dom0 boot took %s", l.BootTime().Round(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := l.MustSucceed(ctx, "xl list; ip -4 addr show dev "+BridgeName+"; xenstore-read domid; pidof xenconsoled oxenstored")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Domain-0", "inet " + Dom0Addr + "/24", "\n0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("dom0 state lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`\n\d+ \d+\n?$`).MatchString(out) {
		t.Errorf("xenconsoled and oxenstored are not both running:\n%s", out)
	}
	if !strings.Contains(readText(l.XenLogPath()), "Xen version 4.17") {
		t.Errorf("%s has no Xen banner", l.XenLogPath())
	}
}

func TestRunReportsStatusAndOutput(t *testing.T) {
	l := lab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := l.Run(ctx, "echo out; echo err >&2; printf 'no newline'; exit 7")
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitStatus != 7 || r.Output != "out\nerr\nno newline" {
		t.Errorf("got status %d output %q, want 7 and %q", r.ExitStatus, r.Output, "out\nerr\nno newline")
	}
	// A command past its deadline is killed in dom0 and the channel stays usable.
	short, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	start := time.Now()
	r, err = l.Run(short, "sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitStatus != 137 || time.Since(start) > 15*time.Second {
		t.Errorf("sleep past deadline: status %d after %s, want 137 (SIGKILL) within a few seconds", r.ExitStatus, time.Since(start))
	}
	if out, err := l.MustSucceed(ctx, "echo alive"); err != nil || out != "alive\n" {
		t.Errorf("channel after a killed command: %q, %v", out, err)
	}
}

func TestMinimalPVHGuestPrintsAndPowersOff(t *testing.T) {
	l := lab(t)
	img := filepath.Join(t.TempDir(), "pvh.elf")
	msg := "xenlab minimal pvh " + randomHex(t, 4)
	if err := os.WriteFile(img, MinimalPVHImage(msg), 0o644); err != nil {
		t.Fatal(err)
	}
	runPVH(t, l, "pvhmin", img, regexp.MustCompile("^"+regexp.QuoteMeta(msg)+"$"))
}

// runPVH boots a PVH image, waits for a matching 0xE9 line and for poweroff.
func runPVH(t *testing.T, l *Lab, name, image string, want *regexp.Regexp) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	g, err := l.Create(ctx, GuestConfig{Name: name, Type: PVH, Kernel: image, MemoryMiB: 32})
	if err != nil {
		t.Fatal(err)
	}
	line, err := g.WaitXen(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if reason != Poweroff {
		t.Errorf("shutdown reason %s, want poweroff; Xen lines: %q", reason, g.XenLines())
	}
	t.Logf("d%d printed %q on Xen's console and powered off; create-to-poweroff %s",
		g.DomID, line, time.Since(start).Round(10*time.Millisecond))
}

func TestBaselinePingsDom0AndReadsDisk(t *testing.T) {
	l := lab(t)
	pattern := "XENLAB-DISK-PATTERN-" + randomHex(t, 8)
	disk := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, 4<<20)
	copy(data, pattern)
	copy(data[len(data)-512:], pattern) // the end too: blkfront sees the whole image
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`ping -c 3 -W 5 %s || exit 1
echo "head:$(head -c %d /dev/xvda)"
echo "tail:$(dd if=/dev/xvda bs=512 skip=%d count=1 2>/dev/null | head -c %d)"
`, Dom0Addr, len(pattern), len(data)/512-1, len(pattern))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	g, err := l.Create(ctx, l.BaselineConfig("baseline", "10.0.0.2/24", script, Disk{HostPath: disk, Vdev: "xvda"}))
	if err != nil {
		t.Fatal(err)
	}
	line, err := g.WaitConsole(ctx, BaselineExitRE)
	if err != nil {
		t.Fatal(err)
	}
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		t.Fatal(err)
	}
	con := g.Console()
	if line != "XENLAB-EXIT 0" || reason != Poweroff {
		t.Fatalf("baseline ended with %q and %s, want XENLAB-EXIT 0 and poweroff; console:\n%s", line, reason, con)
	}
	for _, want := range []string{"3 packets received", "head:" + pattern, "tail:" + pattern} {
		if !strings.Contains(con, want) {
			t.Errorf("baseline console lacks %q:\n%s", want, con)
		}
	}
	t.Logf("baseline d%d: ping + disk read, create-to-poweroff %s", g.DomID, time.Since(start).Round(10*time.Millisecond))
}

func TestHungGuestIsDestroyedAtDeadline(t *testing.T) {
	l := lab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := l.Create(ctx, l.BaselineConfig("hung", "", "echo XENLAB-HANGING; sleep 3600"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WaitConsole(ctx, regexp.MustCompile("^XENLAB-HANGING")); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	defer cancel2()
	if _, err := g.WaitShutdown(short); err == nil || !strings.Contains(err.Error(), "destroyed it") {
		t.Fatalf("WaitShutdown past its deadline: %v, want an error saying the guest was destroyed", err)
	}
	out, err := l.MustSucceed(ctx, "xl list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "hung") {
		t.Errorf("guest still listed after the deadline:\n%s", out)
	}
	if !bytes.Contains([]byte(g.Console()), []byte("XENLAB-HANGING")) {
		t.Errorf("console log of the destroyed guest was not kept (%s)", g.ConsoleLogPath())
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestHotplugIntoRunningGuest: a disk attached to a running guest reaches it through the
// block-lab hotplug script and blkback, and dom0 reaches the guest over the bridge.
func TestHotplugIntoRunningGuest(t *testing.T) {
	l := lab(t)
	pattern := "XENLAB-HOTPLUG-" + randomHex(t, 8)
	disk := filepath.Join(t.TempDir(), "hot.img")
	data := make([]byte, 1<<20)
	copy(data, pattern)
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`echo XENLAB-WAITING
i=0
while [ ! -b /dev/xvdb ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
echo "hot:$(head -c %d /dev/xvdb)"
`, len(pattern))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := l.Create(ctx, l.BaselineConfig("hotplug", "10.0.0.3/24", script))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WaitConsole(ctx, regexp.MustCompile("^XENLAB-WAITING")); err != nil {
		t.Fatal(err)
	}
	if out, err := l.MustSucceed(ctx, "busybox ping -c 2 -W 5 10.0.0.3"); err != nil {
		t.Errorf("dom0 cannot ping the guest: %v\n%s", err, out)
	}
	target, err := l.CopyIn(disk, "hotplug.hot.img")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.MustSucceed(ctx, fmt.Sprintf("xl block-attach hotplug 'format=raw,vdev=xvdb,access=ro,script=block-lab,target=%s'", target)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.WaitConsole(ctx, regexp.MustCompile("^hot:")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.WaitShutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.Console(), "hot:"+pattern) {
		t.Errorf("hot-plugged disk did not show the pattern:\n%s", g.Console())
	}
	// The loop device behind the disk is released with the domain.
	if out, err := l.MustSucceed(ctx, "losetup -a"); err != nil || strings.Contains(out, "hotplug.hot.img") {
		t.Errorf("loop device still attached after the guest is gone: %q %v", out, err)
	}
}

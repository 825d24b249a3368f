package boot_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/builder/qemu"
	"github.com/unikgo/unikgo/qemu-tests/xenlab"
)

// BenchmarkBoot boots the same hello program as a unikgo image and as
// /init on Debian's Linux kernel, both under the same QEMU (TCG, 128 MiB,
// one vCPU), and reports host wall time per boot-to-exit (ns/op), guest
// time from entry to main (guest-main-ms) and the image size. Each boots
// with two guest clocks: "tcg", the host's (TCG's TSC is the host's), and
// "icount", QEMU's instruction counter (qemu.Config.InstructionClock), which
// leaves out what emulation costs and counts what the guest executes.
// Results go to docs/perf.md.
func BenchmarkBoot(b *testing.B) {
	for _, icount := range []bool{false, true} {
		clock := "tcg"
		if icount {
			clock = "icount"
		}
		b.Run("unikgo-"+clock, func(b *testing.B) { benchBootUnikgo(b, icount) })
		b.Run("linux-"+clock, func(b *testing.B) { benchBootLinux(b, icount) })
	}
}

func benchBootUnikgo(b *testing.B, icount bool) {
	img := filepath.Join(b.TempDir(), "hello.img")
	ctx := context.Background()
	im, err := builder.Build(ctx, builder.BuildOptions{Package: "./examples/hello", Dir: "../..", Output: img, Strip: true})
	if err != nil {
		b.Fatal(err)
	}
	re := regexp.MustCompile(`unikgo: main after ([0-9.]+) ms`)
	var guest float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var out bytes.Buffer
		ex, err := qemu.Run(ctx, qemu.Config{Image: img, Cmdline: "unikgo.quiet unikgo.boottime hello",
			InstructionClock: icount, Stdout: &out, Timeout: time.Minute})
		if err != nil || ex.Status != 0 {
			b.Fatalf("boot: %v, status %d\n%s", err, ex.Status, out.String())
		}
		m := re.FindStringSubmatch(out.String())
		if m == nil {
			b.Fatalf("no boot time line:\n%s", out.String())
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		guest += v
	}
	b.ReportMetric(guest/float64(b.N), "guest-main-ms")
	b.ReportMetric(float64(im.Size), "image-bytes")
}

func benchBootLinux(b *testing.B, icount bool) {
	ctx := context.Background()
	art, err := xenlab.EnsureArtifacts(ctx, xenlab.BuildOptions{Progress: os.Stderr})
	if err != nil {
		b.Fatalf("Debian kernel for the baseline: %v", err)
	}
	dir := b.TempDir()
	initBin := filepath.Join(dir, "init")
	buildLinux(b, "./qemu-tests/boot/testdata/linuxinit", initBin)
	initrd := filepath.Join(dir, "init.cpio")
	if err := writeCpio(initrd, initBin); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(initrd)
	kst, _ := os.Stat(art.Kernel)
	// The same machine as qemu.Config's, clock included.
	cfg := qemu.Config{Image: art.Kernel, Cmdline: "console=ttyS0 quiet panic=-1", InstructionClock: icount}
	args, err := cfg.Args()
	if err != nil {
		b.Fatal(err)
	}
	args = append(args, "-initrd", initrd)
	re := regexp.MustCompile(`linux: main after ([0-9.]+) s`)
	var guest float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := exec.CommandContext(c, qemu.Binary, args...).Output()
		cancel()
		m := re.FindSubmatch(out)
		if m == nil {
			b.Fatalf("linux boot: %v\n%s", err, out)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		guest += v * 1000
	}
	b.ReportMetric(guest/float64(b.N), "guest-main-ms")
	b.ReportMetric(float64(st.Size()+kst.Size()), "image-bytes")
}

// buildLinux builds the main package pkg (relative to the module root) as
// a static Linux binary at out.
func buildLinux(tb testing.TB, pkg, out string) {
	tb.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir, cmd.Env = "../..", append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building %s for Linux: %v\n%s", pkg, err, msg)
	}
}

// writeCpio writes a newc-format initramfs holding only /init.
func writeCpio(path, initBin string) error {
	data, err := os.ReadFile(initBin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	entry := func(name string, mode uint32, body []byte) {
		fmt.Fprintf(&buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(name)+1, 0)
		buf.WriteString(name)
		buf.WriteByte(0)
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
		buf.Write(body)
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
	}
	entry("init", 0o100755, data)
	entry("TRAILER!!!", 0, nil)
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

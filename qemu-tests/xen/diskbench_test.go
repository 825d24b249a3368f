package xen_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/unikgo/unikgo/qemu-tests/xenlab"
)

var diskbenchRE = regexp.MustCompile(`diskbench: (\S+) ([0-9.]+) MiB/s ([0-9.]+) IOPS`)

// BenchmarkDiskLab runs testdata/diskbench (sequential 1 MiB and random
// 4 KiB, O_DIRECT) on an 80 MiB disk through Linux's blkback, once as a
// unikgo PVH image and once as a Linux program in the baseline Linux PV
// guest of the same lab run, and reports both sides' numbers (guest
// clocks). Run with -benchtime=1x; the figures go to docs/perf.md.
func BenchmarkDiskLab(b *testing.B) {
	l := lab(b)
	img := image(b, "./qemu-tests/xen/testdata/diskbench")
	dir := b.TempDir()
	prog, size := linuxDiskbench(b, dir)
	labMu.Lock()
	defer labMu.Unlock()
	for i := 0; i < b.N; i++ {
		d1 := filepath.Join(dir, "u.img")
		sparse(b, d1, 80<<20)
		u := diskbench(b, l, xenlab.GuestConfig{
			Name: "dbu", Type: xenlab.PVH, Kernel: img, MemoryMiB: 128,
			Cmdline: "diskbench /dev/xvda 64 1024",
			Disks:   []xenlab.Disk{{HostPath: d1, Vdev: "xvda"}},
		}, false)
		d2 := filepath.Join(dir, "l.img")
		sparse(b, d2, 80<<20)
		script := fmt.Sprintf("set -e\nmkdir -p /run/db\ncd /run/db\ndd if=/dev/xvdb of=p bs=4096 2>/dev/null\nhead -c %d p > diskbench\nchmod +x diskbench\n./diskbench /dev/xvda 64 1024\n", size)
		lx := diskbench(b, l, l.BaselineConfig("dbl", "", script,
			xenlab.Disk{HostPath: d2, Vdev: "xvda"}, xenlab.Disk{HostPath: prog, Vdev: "xvdb", ReadOnly: true}), true)
		for k, v := range u {
			b.ReportMetric(v, "unikgo-"+k)
			b.ReportMetric(lx[k], "linux-"+k)
		}
	}
}

func diskbench(tb testing.TB, l *xenlab.Lab, cfg xenlab.GuestConfig, linux bool) map[string]float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	g, err := l.Create(ctx, cfg)
	if err != nil {
		tb.Fatalf("creating %s: %v", cfg.Name, err)
	}
	defer g.Destroy(context.Background())
	if linux {
		if _, err := g.WaitConsole(ctx, xenlab.BaselineExitRE); err != nil {
			tb.Fatalf("%s: %v\nconsole:\n%s", cfg.Name, err, g.Console())
		}
	} else if _, err := g.WaitShutdown(ctx); err != nil {
		tb.Fatalf("%s: %v\nconsole:\n%s", cfg.Name, err, g.Console())
	}
	con := g.Console()
	out := map[string]float64{}
	for _, m := range diskbenchRE.FindAllStringSubmatch(con, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		iops, _ := strconv.ParseFloat(m[3], 64)
		if m[1] == "rand-write-4k" || m[1] == "rand-read-4k" {
			out[m[1]+"-IOPS"] = iops
		} else {
			out[m[1]+"-MiB/s"] = v
		}
	}
	if len(out) != 4 {
		tb.Fatalf("%s: %d results, want 4\nconsole:\n%s", cfg.Name, len(out), con)
	}
	return out
}

func sparse(tb testing.TB, path string, size int64) {
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		tb.Fatal(err)
	}
}

// linuxDiskbench builds testdata/diskbench as an ordinary static Linux
// program on a raw disk, for the baseline guest.
func linuxDiskbench(tb testing.TB, dir string) (path string, size int) {
	return programDisk(tb, dir, linuxProgram(tb, dir, "./qemu-tests/xen/testdata/diskbench"))
}

// linuxProgram builds pkg (relative to the module root) as a static Linux
// program in dir, for dom0 or the baseline guest.
func linuxProgram(tb testing.TB, dir, pkg string) string {
	tb.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg)+".linux")
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building %s for Linux: %v\n%s", pkg, err, out)
	}
	return bin
}

// programDisk pads a program to whole sectors as a raw disk image the
// baseline guest reads it from (head -c size /dev/xvdX).
func programDisk(tb testing.TB, dir, bin string) (path string, size int) {
	tb.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		tb.Fatal(err)
	}
	size = len(data)
	padded := make([]byte, (size+4095)/4096*4096)
	copy(padded, data)
	path = bin + ".disk"
	if err := os.WriteFile(path, padded, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path, size
}

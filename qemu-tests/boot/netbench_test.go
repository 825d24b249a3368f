package boot_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/builder/qemu"
	"github.com/unikgo/unikgo/qemu-tests/xenlab"
)

// netBenchMiB is how much each transfer of BenchmarkNetVirtio moves.
const netBenchMiB = 32

// BenchmarkNetVirtio measures TCP throughput between the host and a guest
// under QEMU (TCG, 256 MiB, one vCPU, virtio-net-pci, user networking with
// two forwarded ports), both ways, for two guests running the same
// qemu-tests/xen/testdata/netpeer as "netpeer servers :5001 :5002": a
// unikgo image, and Debian's Linux kernel with an initramfs of busybox,
// virtio_net and netpeer built as a static Linux program. The host side is
// that same netpeer: "send" to the guest's sink (to-guest) and "recv" from
// its source (from-guest), netBenchMiB each.
//
// Besides MiB/s it reports, per transfer, QEMU's host CPU time over the
// transfer's wall time (/proc/PID/task/*/stat, utime+stime): vcpu-% is the
// vCPU thread (the guest's own work, emulated by TCG), qemu-% all of QEMU's
// threads (adds the main loop: slirp and the virtio-net backend). 100 is
// one host core. Results go to docs/perf.md.
func BenchmarkNetVirtio(b *testing.B) {
	if _, err := qemu.LookPath(qemu.Binary); err != nil {
		b.Fatalf("%v (run scripts/setup)", err)
	}
	ctx := context.Background()
	dir := b.TempDir()

	// One static Linux netpeer serves as the host side and the Linux guest's.
	peer := filepath.Join(dir, "netpeer")
	buildLinux(b, "./qemu-tests/xen/testdata/netpeer", peer)
	img := filepath.Join(dir, "netpeer.img")
	if _, err := builder.Build(ctx, builder.BuildOptions{Package: "./qemu-tests/xen/testdata/netpeer", Dir: "../..", Output: img}); err != nil {
		b.Fatalf("building the netpeer image: %v", err)
	}
	art, err := xenlab.EnsureArtifacts(ctx, xenlab.BuildOptions{Progress: os.Stderr})
	if err != nil {
		b.Fatalf("Debian kernel for the baseline: %v", err)
	}
	initrd := filepath.Join(dir, "netpeer.cpio")
	if err := linuxNetInitrd(art, peer, initrd); err != nil {
		b.Fatal(err)
	}

	guests := []struct {
		name string
		cfg  qemu.Config
		more []string // QEMU arguments after Config.Args
	}{
		{"unikgo", qemu.Config{Image: img, Cmdline: "ip=10.0.2.15/24:10.0.2.2 netpeer servers :5001 :5002"}, nil},
		{"linux", qemu.Config{Image: art.Kernel, Cmdline: "console=ttyS0 quiet panic=-1"}, []string{"-initrd", initrd}},
	}
	b.ResetTimer()
	for _, g := range guests {
		r := runNetGuest(b, g.name, g.cfg, g.more, peer)
		for _, d := range []string{"to", "from"} {
			m := r[d]
			b.ReportMetric(m.mibs, fmt.Sprintf("%s-%s-guest-MiB/s", g.name, d))
			b.ReportMetric(m.vcpu, fmt.Sprintf("%s-%s-guest-vcpu-%%", g.name, d))
			b.ReportMetric(m.qemu, fmt.Sprintf("%s-%s-guest-qemu-%%", g.name, d))
		}
	}
}

// netResult is one direction's averages over b.N transfers.
type netResult struct{ mibs, vcpu, qemu float64 }

// runNetGuest boots cfg with netpeer's ports forwarded, waits for netpeer's
// servers, and runs b.N transfers each way with the host's netpeer.
func runNetGuest(b *testing.B, name string, cfg qemu.Config, more []string, peer string) map[string]netResult {
	sinkPort, sourcePort := hostPort(b), hostPort(b)
	cfg.Memory, cfg.CPUs = "256M", 1
	cfg.Net = fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:5001,hostfwd=tcp:127.0.0.1:%d-:5002", sinkPort, sourcePort)
	args, err := cfg.Args()
	if err != nil {
		b.Fatal(err)
	}
	// Thread names tell the vCPU thread ("CPU 0/TCG") from the main loop.
	args = append(append(args, more...), "-name", "netbench,debug-threads=on")
	var console, qerr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	q := exec.CommandContext(ctx, qemu.Binary, args...)
	q.Stdout, q.Stderr = &console, &qerr
	q.Cancel = func() error { return q.Process.Signal(os.Interrupt) }
	q.WaitDelay = 5 * time.Second
	if err := q.Start(); err != nil {
		b.Fatalf("%s: starting QEMU: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Wait() }()
	defer func() {
		cancel()
		<-done
		if b.Failed() {
			b.Logf("%s console:\n%s\nqemu:\n%s", name, console.String(), qerr.String())
		}
	}()

	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(console.String(), "netpeer: source on") {
		select {
		case err := <-done:
			done <- err
			b.Fatalf("%s: QEMU stopped before netpeer listened: %v", name, err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: netpeer did not listen within 5 minutes", name)
		}
	}
	sink := fmt.Sprintf("127.0.0.1:%d", sinkPort)
	source := fmt.Sprintf("127.0.0.1:%d", sourcePort)
	// A small transfer each way first: the path works, and the guest's
	// first-use costs (page faults, TCG translation) stay out of the numbers.
	for _, c := range [][]string{{"send", sink}, {"recv", source}} {
		if out, err := exec.Command(peer, c[0], c[1], "1").CombinedOutput(); err != nil {
			b.Fatalf("%s: warm-up %s: %v\n%s", name, c[0], err, out)
		}
	}

	re := regexp.MustCompile(`(send|recv): (\d+) bytes in \S+: ([0-9.]+) MiB/s`)
	res := map[string]netResult{}
	for i := 0; i < b.N; i++ {
		for _, c := range []struct{ dir, verb, addr string }{{"to", "send", sink}, {"from", "recv", source}} {
			before, err := qemuCPU(q.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			out, err := exec.Command(peer, c.verb, c.addr, strconv.Itoa(netBenchMiB)).CombinedOutput()
			wall := time.Since(start)
			after, cerr := qemuCPU(q.Process.Pid)
			m := re.FindSubmatch(out)
			if err != nil || cerr != nil || m == nil {
				b.Fatalf("%s: netpeer %s: %v %v\n%s", name, c.verb, err, cerr, out)
			}
			if n, _ := strconv.ParseInt(string(m[2]), 10, 64); n != netBenchMiB<<20 {
				b.Fatalf("%s: netpeer %s moved %d bytes", name, c.verb, n)
			}
			mibs, _ := strconv.ParseFloat(string(m[3]), 64)
			b.Logf("%s: %s", name, bytes.TrimSpace(out))
			r := res[c.dir]
			r.mibs += mibs / float64(b.N)
			r.vcpu += 100 * (after.vcpu - before.vcpu).Seconds() / wall.Seconds() / float64(b.N)
			r.qemu += 100 * (after.all - before.all).Seconds() / wall.Seconds() / float64(b.N)
			res[c.dir] = r
		}
	}
	return res
}

// hostPort returns a host TCP port nobody listens on now.
func hostPort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// cpuTimes is a QEMU process's CPU time so far: its vCPU threads' and all.
type cpuTimes struct{ vcpu, all time.Duration }

// qemuCPU reads utime+stime of each of pid's threads.
func qemuCPU(pid int) (cpuTimes, error) {
	var t cpuTimes
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return t, fmt.Errorf("no threads of QEMU (pid %d): %v", pid, err)
	}
	for _, p := range tasks {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		// "TID (COMM) STATE PPID ...": utime and stime are fields 14 and
		// 15, in clock ticks (USER_HZ, 100 on Linux/amd64).
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			return t, fmt.Errorf("%s: unexpected %q", p, s)
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			return t, fmt.Errorf("%s: unexpected %q", p, s)
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		d := time.Duration(ut+st) * (time.Second / 100)
		t.all += d
		if strings.HasPrefix(s[open+1:end], "CPU ") {
			t.vcpu += d
		}
	}
	return t, nil
}

// netInit is /init of the Linux guest: the virtio network modules, eth0 as
// QEMU's user network expects it, then netpeer's servers.
const netInit = `#!/bin/busybox sh
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
for m in $($bb cat /modules/order); do
	$bb insmod /modules/$m || echo "netbench: insmod $m failed"
done
for i in $($bb seq 50); do
	[ -e /sys/class/net/eth0 ] && break
	$bb sleep 0.1
done
$bb ip link set lo up
$bb ip addr add 10.0.2.15/24 dev eth0
$bb ip link set eth0 up
$bb ip route add default via 10.0.2.2
exec /netpeer servers :5001 :5002
`

// linuxNetInitrd writes the Linux guest's initramfs: /init (netInit),
// busybox, netpeer and the modules virtio_pci and virtio_net need, in load
// order. Busybox and the modules come from the Xen lab's cached
// debootstrap root (ROOT/roots/*.tar, next to the artefacts), which holds
// the whole /lib/modules of the kernel the artefacts carry.
func linuxNetInitrd(art *xenlab.Artifacts, netpeer, out string) error {
	kver, err := kernelVersion(art.Kernel)
	if err != nil {
		return err
	}
	tars, _ := filepath.Glob(filepath.Join(filepath.Dir(art.Dir), "roots", "*.tar"))
	var files map[string][]byte
	for _, t := range tars {
		if files, err = rootFiles(t, kver); err == nil {
			break
		}
	}
	if files == nil {
		return fmt.Errorf("no cached debootstrap root under %s holds busybox and the modules of kernel %s (%v); removing %s makes the next run rebuild it",
			filepath.Join(filepath.Dir(art.Dir), "roots"), kver, err, art.Dir)
	}
	deps := map[string][]string{}
	for _, l := range strings.Split(string(files["modules.dep"]), "\n") {
		mod, rest, ok := strings.Cut(l, ":")
		if ok {
			deps[mod] = strings.Fields(rest)
		}
	}
	var order []string
	seen := map[string]bool{}
	var load func(mod string) error
	load = func(mod string) error {
		if seen[mod] {
			return nil
		}
		seen[mod] = true
		ds, ok := deps[mod]
		if !ok {
			return fmt.Errorf("module %s of kernel %s: not in modules.dep", mod, kver)
		}
		for _, d := range ds {
			if err := load(d); err != nil {
				return err
			}
		}
		order = append(order, mod)
		return nil
	}
	for _, m := range []string{"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/net/virtio_net.ko"} {
		if err := load(m); err != nil {
			return err
		}
	}
	peer, err := os.ReadFile(netpeer)
	if err != nil {
		return err
	}
	var c cpioWriter
	c.dir("bin")
	c.file("bin/busybox", 0o755, files["busybox"])
	c.file("init", 0o755, []byte(netInit))
	c.file("netpeer", 0o755, peer)
	c.dir("modules")
	var names []string
	for _, m := range order {
		body, ok := files[m]
		if !ok {
			return fmt.Errorf("module %s of kernel %s: not in the cached root", m, kver)
		}
		c.file("modules/"+path.Base(m), 0o644, body)
		names = append(names, path.Base(m))
	}
	c.file("modules/order", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	return os.WriteFile(out, c.finish(), 0o644)
}

// kernelVersion reads the release ("6.1.0-50-amd64") from a bzImage's
// setup header (kernel_version at 0x20e, an offset from 0x200).
func kernelVersion(bzImage string) (string, error) {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return "", err
	}
	if len(data) < 0x210 || string(data[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("%s: not a bzImage", bzImage)
	}
	off := int(binary.LittleEndian.Uint16(data[0x20e:])) + 0x200
	if off >= len(data) {
		return "", fmt.Errorf("%s: bad kernel_version offset", bzImage)
	}
	v, _, _ := strings.Cut(string(data[off:min(off+256, len(data))]), " ")
	return v, nil
}

// rootFiles reads busybox, and modules.dep and every module of kernel kver
// (keyed by their modules.dep names) from a tar of a Debian root.
func rootFiles(tarPath, kver string) (map[string][]byte, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mods := "usr/lib/modules/" + kver + "/"
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", tarPath, err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		var key string
		switch {
		case h.Typeflag != tar.TypeReg:
		case name == "usr/bin/busybox" || name == "bin/busybox":
			key = "busybox"
		case strings.HasPrefix(name, mods) && (strings.HasSuffix(name, ".ko") || name == mods+"modules.dep"):
			key = strings.TrimPrefix(name, mods)
		}
		if key == "" {
			continue
		}
		if files[key], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("%s: %v", tarPath, err)
		}
	}
	if files["busybox"] == nil || files["modules.dep"] == nil {
		return nil, errors.New(tarPath + ": no busybox or no modules.dep")
	}
	return files, nil
}

// cpioWriter builds a newc-format archive.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (c *cpioWriter) entry(name string, mode uint32, body []byte) {
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	fmt.Fprintf(&c.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(body), 0, 0, 0, 0, len(name)+1, 0)
	c.buf.WriteString(name)
	c.buf.WriteByte(0)
	c.pad()
	c.buf.Write(body)
	c.pad()
}

func (c *cpioWriter) pad() {
	for c.buf.Len()%4 != 0 {
		c.buf.WriteByte(0)
	}
}

func (c *cpioWriter) dir(name string) { c.entry(name, 0o040755, nil) }

func (c *cpioWriter) file(name string, perm uint32, body []byte) {
	c.entry(name, 0o100000|perm, body)
}

func (c *cpioWriter) finish() []byte {
	c.entry("TRAILER!!!", 0, nil)
	return c.buf.Bytes()
}

package xen_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/unikgo/unikgo/qemu-tests/xenlab"
)

// TestNetfrontPVH brings up a vif with netfront against dom0's Linux
// netback and exchanges raw frames with dom0 across the lab bridge: ARP,
// then ICMP echo requests up to a full 1500-byte MTU, each reply checked.
func TestNetfrontPVH(t *testing.T) {
	l := lab(t)
	img := image(t, "./qemu-tests/xen/testdata/net")
	labMu.Lock()
	defer labMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := xenlab.GuestConfig{Name: "net", Type: xenlab.PVH, Kernel: img, MemoryMiB: 64, NICs: 1, Cmdline: "net 10.0.0.7 10.0.0.1"}
	g, err := l.Create(ctx, cfg)
	if err != nil {
		t.Fatalf("creating guest: %v", err)
	}
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		g.Destroy(context.Background())
		t.Fatalf("guest did not shut down: %v\nconsole:\n%s", err, g.Console())
	}
	con := g.Console()
	expect(t, con, reason, xenlab.Poweroff, "net: vif 0 up in", "mac "+cfg.MAC(0), "mtu 1500",
		"net: 10.0.0.1 is at", "net: 98-byte frames: 3 echo replies", "net: 1514-byte frames: 3 echo replies", "net: ok")
	for _, m := range regexp.MustCompile(`net: (vif|\d+-byte|stats).*`).FindAllString(con, -1) {
		t.Log(m)
	}
}

// TestNetfrontDetachPVH: when dom0 detaches the vif (xl network-detach),
// netfront answers the backend's Closing as Linux netfront does, so xl
// completes the removal, and the NIC goes down: Receive and Transmit
// return netdev.ErrDown and Close succeeds.
func TestNetfrontDetachPVH(t *testing.T) {
	l := lab(t)
	img := image(t, "./qemu-tests/xen/testdata/net")
	labMu.Lock()
	defer labMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := xenlab.GuestConfig{Name: "netdetach", Type: xenlab.PVH, Kernel: img, MemoryMiB: 64, NICs: 1, Cmdline: "net 10.0.0.8 10.0.0.1 detach"}
	g, err := l.Create(ctx, cfg)
	if err != nil {
		t.Fatalf("creating guest: %v", err)
	}
	defer g.Destroy(context.Background())
	if _, err := g.WaitConsole(ctx, regexp.MustCompile(`net: waiting for the vif to go`)); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, g.Console())
	}
	start := time.Now()
	if out, err := l.MustSucceed(ctx, "xl network-detach netdetach 0"); err != nil {
		t.Fatalf("xl network-detach: %v: %s", err, out)
	}
	t.Logf("xl network-detach took %v", time.Since(start).Round(time.Millisecond))
	reason, err := g.WaitShutdown(ctx)
	if err != nil {
		t.Fatalf("guest did not shut down: %v\nconsole:\n%s", err, g.Console())
	}
	expect(t, g.Console(), reason, xenlab.Poweroff, "net: vif gone: netdev: the network device is down", "net: ok")
	if out, err := l.MustSucceed(ctx, "xl network-list netdetach 2>&1 || true"); err == nil && regexp.MustCompile(`(?m)^0\s`).MatchString(out) {
		t.Errorf("vif 0 still listed after the detach:\n%s", out)
	}
}

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

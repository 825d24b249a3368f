package qubesdb

import (
	"context"
	"fmt"
	"net"
	"testing"
)

// BenchmarkConnect measures a VM's initial synchronization of a
// 100-entry database (a ProxyVM with firewall rules) over net.Pipe.
func BenchmarkConnect(b *testing.B) {
	ctx := context.Background()
	srv := NewServer(Options{})
	for i := 0; i < 100; i++ {
		srv.Write(ctx, fmt.Sprintf("/qubes-firewall/10.137.0.%d/0000", i), "action=accept proto=tcp dstports=443-443")
	}
	b.ReportAllocs()
	for b.Loop() {
		x, y := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, x) }()
		c, err := Connect(ctx, y, Options{})
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
		<-done
	}
}

// BenchmarkWrite measures one VM write answered by dom0 over net.Pipe.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	srv := NewServer(Options{})
	x, y := net.Pipe()
	go srv.Serve(ctx, x)
	c, err := Connect(ctx, y, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Write(ctx, "/qubes-vm-updateable", "True"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHeaderUnmarshal(b *testing.B) {
	raw := rawHeader(1, "/qubes-firewall/10.137.0.5/0000", 40)
	var h Header
	b.ReportAllocs()
	for b.Loop() {
		if err := h.UnmarshalBinary(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// Command smoke exercises the virtio drivers on QEMU's real devices, by
// hand (it is not part of the test suite):
//
//	truncate -s 16M /tmp/d.img
//	go run ./cmd/unikbuild run --disk /tmp/d.img --net user ./virtio/internal/smoke
//
// It probes virtio-blk and virtio-net, writes, flushes and reads back the
// first writable disk (1 MiB, a partial sector, 16 goroutines at once),
// and asks QEMU's user-network gateway for its MAC with ARP. With
// --env SMOKE_POLL=1 the disks are reopened without interrupts. It exits
// 0 when everything worked. Checked on -machine pc (transitional devices)
// and q35 with disable-legacy=on, logical_block_size=4096 and host_mtu=9000.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/virtio"

	"github.com/unikgo/unikgo/virtio/blk"
	vnet "github.com/unikgo/unikgo/virtio/net"
)

func main() {
	ok := true
	fail := func(format string, args ...any) {
		fmt.Printf("FAIL "+format+"\n", args...)
		ok = false
	}
	ctx := context.Background()
	disks, err := blk.Probe(ctx)
	if os.Getenv("SMOKE_POLL") != "" {
		// The same devices again, polled instead of interrupted.
		for _, d := range disks {
			d.Close()
		}
		disks = nil
		h, _ := pci.System()
		mem, _ := dma.System()
		for _, p := range virtio.Find(h, virtio.TypeBlock) {
			d, err := blk.New(ctx, p, virtio.Options{Mem: mem}, blk.Config{})
			if err != nil {
				fail("polled New: %v", err)
				continue
			}
			disks = append(disks, d)
		}
	}
	fmt.Printf("blk: %d disks, err %v\n", len(disks), err)
	for _, d := range disks {
		id, _ := d.ID()
		fmt.Printf("blk %v: size %d sector %d ro %v flush %v mode %v id %q\n", d.PCI(), d.Size(), d.SectorSize(), d.ReadOnly(), d.FlushSupported(), d.Mode(), id)
		if d.ReadOnly() {
			continue
		}
		p := make([]byte, 1<<20)
		for i := range p {
			p[i] = byte(i * 7)
		}
		start := time.Now()
		if _, err := d.WriteAt(p, 4096); err != nil {
			fail("write: %v", err)
		}
		if _, err := d.WriteAt([]byte("hello"), 1001); err != nil {
			fail("partial write: %v", err)
		}
		if err := d.Flush(); err != nil {
			fail("flush: %v", err)
		}
		got := make([]byte, 1<<20)
		if _, err := d.ReadAt(got, 4096); err != nil || !bytes.Equal(got, p) {
			fail("read back: %v", err)
		}
		h := make([]byte, 5)
		if _, err := d.ReadAt(h, 1001); err != nil || string(h) != "hello" {
			fail("partial read: %q %v", h, err)
		}
		fmt.Printf("blk: 1 MiB written, flushed and read back in %v\n", time.Since(start))
		start = time.Now()
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				b := bytes.Repeat([]byte{byte(g)}, 256<<10)
				off := int64(2<<20 + g*(256<<10))
				if _, err := d.WriteAt(b, off); err != nil {
					fail("concurrent write: %v", err)
				}
				got := make([]byte, len(b))
				if _, err := d.ReadAt(got, off); err != nil || !bytes.Equal(got, b) {
					fail("concurrent read back: %v", err)
				}
			}(g)
		}
		wg.Wait()
		fmt.Printf("blk: 16 goroutines wrote and read 256 KiB each in %v\n", time.Since(start))
		if err := d.Close(); err != nil {
			fail("close: %v", err)
		}
	}

	nics, err := vnet.Probe(ctx)
	fmt.Printf("net: %d NICs, err %v\n", len(nics), err)
	for _, n := range nics {
		fmt.Printf("net %v: MAC %v MTU %d link %v mode %v\n", n.PCI(), n.MAC(), n.MTU(), n.LinkUp(), n.Mode())
		// ARP who-has 10.0.2.2 (QEMU user networking's gateway).
		f := make([]byte, 42)
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(f[6:], n.MAC())
		binary.BigEndian.PutUint16(f[12:], 0x0806)
		copy(f[14:], []byte{0, 1, 8, 0, 6, 4, 0, 1})
		copy(f[22:], n.MAC())
		copy(f[28:], []byte{10, 0, 2, 15})
		copy(f[38:], []byte{10, 0, 2, 2})
		got := false
		for try := 0; try < 5 && !got; try++ {
			if err := n.Transmit(ctx, f); err != nil {
				fail("transmit: %v", err)
				break
			}
			c, cancel := context.WithTimeout(ctx, time.Second)
			buf := make([]byte, 2048)
			for {
				k, err := n.Receive(c, buf)
				if err != nil {
					break
				}
				if k >= 42 && binary.BigEndian.Uint16(buf[12:]) == 0x0806 && binary.BigEndian.Uint16(buf[20:]) == 2 {
					fmt.Printf("net: ARP reply from %x: 10.0.2.2 is at %v\n", buf[6:12], buf[22:28])
					got = true
					break
				}
			}
			cancel()
		}
		if !got {
			fail("no ARP reply")
		}
		fmt.Printf("net stats %+v\n", n.Stats())
		if err := n.Close(); err != nil {
			fail("close: %v", err)
		}
	}
	if !ok || len(disks) == 0 || len(nics) == 0 {
		os.Exit(1)
	}
	fmt.Println("smoke: ok")
}

// Command net brings up the domain's first vif with netfront and talks to
// dom0 across the lab bridge in raw Ethernet frames: it resolves dom0's
// address with ARP, then pings it with echo requests of several sizes up
// to a full 1500-byte MTU and checks each reply's payload. With "detach",
// it then waits for dom0 to detach the vif (xl network-detach) and checks
// that the NIC goes down.
//
//	net [our IPv4] [dom0's IPv4] [detach]     (defaults: 10.0.0.7 10.0.0.1)
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/unikgo/unikgo/devices/xenglue"
	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/netfront"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

func fail(format string, args ...any) {
	fmt.Printf("net: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// ports adapts the domain's event channels to netfront.
type ports struct{ d *xenglue.Domain }

func (p ports) AllocUnbound(remote gnttab.DomID) (netfront.EventChannel, error) {
	return p.d.AllocUnbound(remote)
}

func main() {
	ours, peer := net.IPv4(10, 0, 0, 7).To4(), net.IPv4(10, 0, 0, 1).To4()
	if len(os.Args) > 2 {
		ours, peer = net.ParseIP(os.Args[1]).To4(), net.ParseIP(os.Args[2]).To4()
	}
	detach := len(os.Args) > 3 && os.Args[3] == "detach"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, err := xenglue.Open()
	if err != nil {
		fail("%v", err)
	}
	ids, err := xenbus.Devices(ctx, d.Store, "vif")
	if err != nil || len(ids) == 0 {
		fail("no vif (%v)", err)
	}
	start := time.Now()
	nic, err := netfront.New(ctx, netfront.Config{Store: d.Store, Grants: d.Grants, Memory: d.Memory, Events: ports{d}, Device: ids[0]})
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("net: vif %s up in %v: mac %v mtu %d\n", ids[0], time.Since(start).Round(time.Millisecond), nic.MAC(), nic.MTU())
	mac := nic.MAC()

	// ARP: who has peer?
	arp := make([]byte, 60)
	copy(arp[0:], bytes.Repeat([]byte{0xff}, 6))
	copy(arp[6:], mac)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	binary.BigEndian.PutUint16(arp[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(arp[16:], 0x0800) // IPv4
	arp[18], arp[19] = 6, 4
	binary.BigEndian.PutUint16(arp[20:], 1) // request
	copy(arp[22:], mac)
	copy(arp[28:], ours)
	copy(arp[38:], peer)
	var peerMAC net.HardwareAddr
	buf := make([]byte, 2048)
	for try := 0; peerMAC == nil; try++ {
		if try == 10 {
			fail("no ARP reply from %v", peer)
		}
		if err := nic.Transmit(ctx, arp); err != nil {
			fail("transmit ARP: %v", err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		for peerMAC == nil {
			n, err := nic.Receive(rctx, buf)
			if err != nil {
				break
			}
			f := buf[:n]
			if n >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 && bytes.Equal(f[28:32], peer) {
				peerMAC = append(net.HardwareAddr(nil), f[22:28]...)
			}
		}
		rcancel()
	}
	fmt.Printf("net: %v is at %v\n", peer, peerMAC)

	// Echo requests of several sizes, three each.
	seq := uint16(0)
	for _, payload := range []int{56, 1000, 1472} {
		var rtt time.Duration
		for range 3 {
			seq++
			f := echo(mac, peerMAC, ours, peer, seq, payload)
			t0 := time.Now()
			if err := nic.Transmit(ctx, f); err != nil {
				fail("transmit echo: %v", err)
			}
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			for {
				n, err := nic.Receive(rctx, buf)
				if err != nil {
					fail("no echo reply %d (%d bytes): %v", seq, payload, err)
				}
				r := buf[:n]
				if n < 42 || binary.BigEndian.Uint16(r[12:]) != 0x0800 || r[23] != 1 || !bytes.Equal(r[26:30], peer) {
					continue
				}
				ihl := int(r[14]&0xf) * 4
				icmp := r[14+ihl:]
				if icmp[0] != 0 || binary.BigEndian.Uint16(icmp[6:]) != seq {
					continue
				}
				if !bytes.Equal(icmp[8:], f[14+20+8:]) {
					fail("echo reply %d: payload differs", seq)
				}
				break
			}
			rcancel()
			rtt += time.Since(t0)
		}
		fmt.Printf("net: %d-byte frames: 3 echo replies, mean round trip %v\n", 14+20+8+payload, (rtt / 3).Round(time.Microsecond))
	}
	s := nic.Stats()
	fmt.Printf("net: stats rx %d frames, tx %d frames, %d bad, %d errors\n", s.RxFrames, s.TxFrames, s.RxBad+s.TxBad, s.RxErrors+s.TxErrors)
	if detach {
		fmt.Println("net: waiting for the vif to go")
		for {
			if _, err = nic.Receive(ctx, buf); err != nil {
				break
			}
		}
		if !errors.Is(err, netdev.ErrDown) {
			fail("Receive after the detach: %v, want ErrDown", err)
		}
		fmt.Printf("net: vif gone: %v\n", err)
		if err := nic.Transmit(ctx, arp); !errors.Is(err, netdev.ErrDown) {
			fail("Transmit after the detach: %v, want ErrDown", err)
		}
	}
	if err := nic.Close(); err != nil {
		fail("close: %v", err)
	}
	fmt.Println("net: ok")
}

// echo builds an ICMP echo request from us to the peer.
func echo(src, dst net.HardwareAddr, from, to net.IP, seq uint16, payload int) []byte {
	f := make([]byte, 14+20+8+payload)
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+payload))
	binary.BigEndian.PutUint16(ip[4:], seq)
	ip[8], ip[9] = 64, 1
	copy(ip[12:], from)
	copy(ip[16:], to)
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	icmp := f[34:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], 0x7567)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	for i := range payload {
		icmp[8+i] = byte(i) ^ byte(seq)
	}
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return f
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

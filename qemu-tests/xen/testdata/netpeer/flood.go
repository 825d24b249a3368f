package main

import (
	"encoding/binary"
	"errors"
	"math/rand"
	"net"
	"syscall"
)

// flood sends n hostile frames to dst on iface through an AF_PACKET
// socket: a valid Ethernet header (so the frames reach the guest) over
// truncated, oversize and random IPv4, IPv6, ARP and unknown payloads.
// Frames the local kernel refuses (longer than the interface's MTU
// allows) are counted, not fatal.
func flood(iface string, dst net.HardwareAddr, n int, seed int64) (sent, refused int, err error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return 0, 0, err
	}
	const ethPAll = 0x0300 // htons(ETH_P_ALL)
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, ethPAll)
	if err != nil {
		return 0, 0, err
	}
	defer syscall.Close(fd)
	sa := &syscall.SockaddrLinklayer{Protocol: ethPAll, Ifindex: ifc.Index, Halen: 6}
	copy(sa.Addr[:], dst)
	r := rand.New(rand.NewSource(seed))
	mtu := ifc.MTU
	buf := make([]byte, 65536)
	for i := 0; i < n; i++ {
		f := frame(r, buf, dst, mtu)
		if err := syscall.Sendto(fd, f, 0, sa); err != nil {
			if errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.EINVAL) {
				refused++
				continue
			}
			if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) {
				i--
				continue
			}
			return sent, refused, err
		}
		sent++
	}
	return sent, refused, nil
}

// frame makes one hostile frame in buf.
func frame(r *rand.Rand, buf []byte, dst net.HardwareAddr, mtu int) []byte {
	var size int
	switch r.Intn(4) {
	case 0: // runts: the Ethernet header and a few bytes
		size = 14 + r.Intn(20)
	case 1: // full size
		size = 14 + mtu
	case 2: // past the MTU (most are refused locally; some drivers take a little more)
		size = 14 + mtu + 1 + r.Intn(64)
	default:
		size = 14 + r.Intn(mtu+1)
	}
	f := buf[:size]
	r.Read(f)
	copy(f, dst)
	f[6] = 0x02 // a locally administered unicast source
	types := []uint16{0x0800, 0x86dd, 0x0806, uint16(r.Intn(0x10000))}
	binary.BigEndian.PutUint16(f[12:], types[r.Intn(len(types))])
	p := f[14:]
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		if len(p) >= 20 {
			p[0] = 0x40 | byte(r.Intn(16)) // version 4, any header length
			// A total length that lies, a protocol among the handled ones.
			binary.BigEndian.PutUint16(p[2:], uint16(r.Intn(0x10000)))
			p[9] = []byte{1, 6, 17, byte(r.Intn(256))}[r.Intn(4)]
			copy(p[16:], []byte{10, 0, 0, byte(r.Intn(256))})
		}
	case 0x86dd:
		if len(p) >= 40 {
			p[0] = 0x60
			binary.BigEndian.PutUint16(p[4:], uint16(r.Intn(0x10000)))
			p[6] = []byte{0, 6, 17, 43, 44, 58, 60, byte(r.Intn(256))}[r.Intn(8)]
		}
	}
	return f
}

// Command ping sends ICMP echo requests to the address in its argument
// through a ping socket (SOCK_DGRAM, IPPROTO_ICMP: Linux's unprivileged
// ping) and checks each reply: type, sequence number and payload.
package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	_ "github.com/unikgo/unikgo/devices/network"
)

const count = 3

func fail(format string, args ...any) {
	fmt.Printf("ping: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: ping IPv4-ADDRESS")
	}
	dst, err := netip.ParseAddr(os.Args[1])
	if err != nil || !dst.Is4() {
		fail("%q is not an IPv4 address", os.Args[1])
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, syscall.IPPROTO_ICMP)
	if err != nil {
		fail("ping socket: %v", err)
	}
	tv := syscall.NsecToTimeval(int64(5 * time.Second))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		fail("SO_RCVTIMEO: %v", err)
	}
	to := &syscall.SockaddrInet4{Addr: dst.As4()}
	replies := 0
	for seq := 1; seq <= count; seq++ {
		payload := []byte(fmt.Sprintf("unikgo ping %d", seq))
		// Type 8 (echo request), code 0, checksum (the kernel fills it
		// for ping sockets), identifier (the kernel's: the socket's
		// port), sequence number.
		req := append([]byte{8, 0, 0, 0, 0, 0, byte(seq >> 8), byte(seq)}, payload...)
		t0 := time.Now()
		if err := syscall.Sendto(fd, req, 0, to); err != nil {
			fail("sendto %v: %v", dst, err)
		}
		buf := make([]byte, 1500)
		for {
			n, from, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				fmt.Printf("ping: seq %d: no reply: %v\n", seq, err)
				break
			}
			r := buf[:n]
			if n < 8 || r[0] != 0 || int(r[6])<<8|int(r[7]) != seq {
				continue // not the reply to this request
			}
			if f, ok := from.(*syscall.SockaddrInet4); !ok || f.Addr != dst.As4() {
				fail("seq %d: reply from %v", seq, from)
			}
			if !bytes.Equal(r[8:], payload) {
				fail("seq %d: payload %q, sent %q", seq, r[8:], payload)
			}
			fmt.Printf("ping: reply from %v: seq=%d time=%v\n", dst, seq, time.Since(t0).Round(time.Microsecond))
			replies++
			break
		}
	}
	fmt.Printf("ping: %d of %d replies\n", replies, count)
	if replies != count {
		os.Exit(1)
	}
}

package netfront

import (
	"fmt"
	"net"
	"strconv"
)

// Frontend keys (io/netif.h; what Linux netfront's talk_to_netback
// writes, the offloads only with Config.Offload).
const (
	keyTxRingRef     = "tx-ring-ref"
	keyRxRingRef     = "rx-ring-ref"
	keyEventChannel  = "event-channel"
	keyRequestRxCopy = "request-rx-copy"
	keyRxNotify      = "feature-rx-notify"
	keySG            = "feature-sg"
	// keyNoCsumOffload=1 asks the backend for complete checksums: Linux
	// netback then drops IP_CSUM from the vif, so the host's stack
	// checksums packets before they reach this domain.
	keyNoCsumOffload = "feature-no-csum-offload"
	// keyGSOTCPv4 and keyGSOTCPv6: in the backend's directory, it takes
	// GSO packets of that type on the tx ring; in the frontend's, the
	// frontend takes them on the rx ring (Linux netback then turns on
	// TSO for the vif). keyIPv6Csum is keyNoCsumOffload=0 for IPv6.
	keyGSOTCPv4 = "feature-gso-tcpv4"
	keyGSOTCPv6 = "feature-gso-tcpv6"
	keyIPv6Csum = "feature-ipv6-csum-offload"
)

// Keys the toolstack and the backend write.
const (
	keyMAC    = "mac" // backend and frontend directories (libxl writes both)
	keyMTU    = "mtu" // frontend (read-only to the guest); backend if not 1500
	keyRxCopy = "feature-rx-copy"
)

// MTU limits. DefaultMTU is what a vif has unless the toolstack says
// otherwise; without the backend's feature-sg a frame must fit one slot
// and the MTU is held to DefaultMTU, as Linux netfront does.
const (
	MinMTU     = 68
	DefaultMTU = 1500
	// MaxMTU keeps the largest frame (header, VLAN tag, MTU) within the
	// 16-bit size of a tx request.
	MaxMTU = MaxTxSize - EthHeader - VLANTag
)

// backendKeys is every backend key read at connect time.
var backendKeys = []string{keyRxCopy, keySG, keyMAC, keyMTU, keyGSOTCPv4, keyGSOTCPv6}

// frontendKeys is every key read from the frontend's own directory.
var frontendKeys = []string{keyMAC, keyMTU}

// params is what the xenstore values say about the link.
type params struct {
	mac net.HardwareAddr
	mtu int
	sg  bool // the backend takes packets of several slots
	// gso4 and gso6: the backend takes TCP GSO packets over IPv4, IPv6
	// (only with sg: a GSO packet has several slots).
	gso4, gso6 bool
}

func trunc(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// ParseMAC parses a MAC address as the toolstack writes it: six pairs of
// hex digits separated by colons ("00:16:3e:5a:01:02"), nothing else. A
// multicast or all-zero address is refused: it cannot be a NIC's.
func ParseMAC(s string) (net.HardwareAddr, error) {
	if len(s) != 17 {
		return nil, fmt.Errorf("netfront: MAC %q is not six colon-separated hex pairs", trunc(s))
	}
	mac := make(net.HardwareAddr, 6)
	for i := range mac {
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 || (i < 5 && s[3*i+2] != ':') {
			return nil, fmt.Errorf("netfront: MAC %q is not six colon-separated hex pairs", trunc(s))
		}
		mac[i] = hi<<4 | lo
	}
	if mac[0]&1 != 0 {
		return nil, fmt.Errorf("netfront: MAC %v is a multicast address", mac)
	}
	if string(mac) == "\x00\x00\x00\x00\x00\x00" {
		return nil, fmt.Errorf("netfront: MAC %v is all zeros", mac)
	}
	return mac, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseUint parses a decimal unsigned number of at most bitSize bits: no
// sign, spaces or base prefix.
func parseUint(what, v string, bitSize int) (uint64, error) {
	if v == "" || len(v) > 20 || v[0] < '0' || v[0] > '9' {
		return 0, fmt.Errorf("netfront: %s: %q is not a number", what, trunc(v))
	}
	n, err := strconv.ParseUint(v, 10, bitSize)
	if err != nil {
		return 0, fmt.Errorf("netfront: %s: %q is not a %d-bit unsigned number", what, trunc(v), bitSize)
	}
	return n, nil
}

// parseParams turns the frontend directory's and the backend's keys
// (missing ones absent from the maps) into the link's parameters. Every
// value was written by another domain: anything malformed is an error
// naming the key.
//
// The MAC is the backend's "mac", else the frontend's (libxl writes the
// same address in both). The MTU is the frontend's "mtu" (libxl writes it
// read-only for the guest), else the backend's, else DefaultMTU.
func parseParams(front, back map[string]string) (params, error) {
	var p params
	flag := func(key string) (bool, error) {
		v, ok := back[key]
		if !ok {
			return false, nil
		}
		n, err := parseUint("backend key "+key, v, 32)
		return n != 0, err
	}
	rxCopy, err := flag(keyRxCopy)
	if err != nil {
		return p, err
	}
	if !rxCopy {
		// Linux netfront refuses such a backend too: the page-flipping
		// receive path is gone from Xen.
		return p, fmt.Errorf("netfront: the backend does not offer %s", keyRxCopy)
	}
	if p.sg, err = flag(keySG); err != nil {
		return p, err
	}
	if p.gso4, err = flag(keyGSOTCPv4); err != nil {
		return p, err
	}
	if p.gso6, err = flag(keyGSOTCPv6); err != nil {
		return p, err
	}
	p.gso4, p.gso6 = p.gso4 && p.sg, p.gso6 && p.sg

	macKey := "backend key " + keyMAC
	mac, ok := back[keyMAC]
	if !ok {
		macKey = "frontend key " + keyMAC
		if mac, ok = front[keyMAC]; !ok {
			return p, fmt.Errorf("netfront: neither the backend nor the frontend directory has a %s key", keyMAC)
		}
	}
	if p.mac, err = ParseMAC(mac); err != nil {
		return p, fmt.Errorf("%s: %w", macKey, err)
	}

	p.mtu = DefaultMTU
	mtuKey := "frontend key " + keyMTU
	v, ok := front[keyMTU]
	if !ok {
		mtuKey = "backend key " + keyMTU
		v, ok = back[keyMTU]
	}
	if ok {
		n, err := parseUint(mtuKey, v, 32)
		if err != nil {
			return p, err
		}
		if n < MinMTU || n > MaxMTU {
			return p, fmt.Errorf("netfront: %s: %d is outside %d..%d", mtuKey, n, MinMTU, MaxMTU)
		}
		p.mtu = int(n)
	}
	if !p.sg {
		p.mtu = min(p.mtu, DefaultMTU)
	}
	return p, nil
}

package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/netstack/nictest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// offFrame is a frame on an offPipe with what its sender said of it.
type offFrame struct {
	b []byte
	m netdev.Meta
}

// offNIC is one end of a cable between two OffloadNICs that behaves as
// Linux netback does between two vifs on one host: a GSO frame or a
// frame with a partial checksum reaches the peer as it was sent, with the
// same Meta (netback's csum_blank|data_validated and GSO extra info).
type offNIC struct {
	mac  net.HardwareAddr
	off  netdev.Offloads
	in   chan offFrame
	peer *offNIC

	once   sync.Once
	closed chan struct{}

	mu   sync.Mutex
	sent []netdev.Meta // Meta of each frame sent
	// metaOf counts the frames sent by transport protocol (0: not IP)
	// and Meta.
	metaOf map[protoMeta]int
	big    int // frames sent larger than the MTU's
	max    int // largest frame sent
	seg    int // largest IP packet a GSO frame's segments make: headers and GSOSize
	// gro delivers GSO frames as netback delivers segments a physical
	// NIC coalesced and validated: data_validated only, with a checksum
	// that is not the frame's.
	gro bool
}

var _ netdev.OffloadNIC = (*offNIC)(nil)

func offPipe(off netdev.Offloads) (*offNIC, *offNIC) {
	mk := func(n byte) *offNIC {
		return &offNIC{mac: net.HardwareAddr{2, 0, 0, 0, 0, n}, off: off, in: make(chan offFrame, 512), closed: make(chan struct{})}
	}
	a, b := mk(1), mk(2)
	a.peer, b.peer = b, a
	return a, b
}

func (n *offNIC) MAC() net.HardwareAddr     { return n.mac }
func (n *offNIC) MTU() int                  { return 1500 }
func (n *offNIC) Offloads() netdev.Offloads { return n.off }
func (n *offNIC) Close() error {
	n.once.Do(func() { close(n.closed) })
	return nil
}

func (n *offNIC) Transmit(ctx context.Context, frame []byte) error {
	return n.TransmitMeta(ctx, frame, netdev.Meta{})
}

func (n *offNIC) TransmitMeta(ctx context.Context, frame []byte, m netdev.Meta) error {
	limit := 1514
	if m.GSOType != netdev.GSONone {
		limit = n.off.MaxTxFrame
	}
	if len(frame) > limit || (m.NeedsCsum && !n.off.TxCsum) || m.CsumValidated ||
		(m.GSOType == netdev.GSOTCPv4 && !n.off.TxTCPv4) || (m.GSOType == netdev.GSOTCPv6 && !n.off.TxTCPv6) ||
		(m.GSOType != netdev.GSONone && (m.GSOSize == 0 || !m.NeedsCsum)) {
		panic("offNIC: frame outside the offloads")
	}
	n.mu.Lock()
	n.sent = append(n.sent, m)
	if n.metaOf == nil {
		n.metaOf = map[protoMeta]int{}
	}
	n.metaOf[protoMeta{l4Proto(frame), m}]++
	if len(frame) > 1514 {
		n.big++
	}
	n.max = max(n.max, len(frame))
	if m.GSOType != netdev.GSONone {
		ip := frame[header.EthernetMinimumSize:]
		hl := header.IPv6MinimumSize
		if m.GSOType == netdev.GSOTCPv4 {
			hl = int(header.IPv4(ip).HeaderLength())
		}
		n.seg = max(n.seg, hl+int(header.TCP(ip[hl:]).DataOffset())+int(m.GSOSize))
	}
	n.mu.Unlock()
	frame = append([]byte(nil), frame...)
	if m.NeedsCsum {
		m.CsumValidated = true
	}
	if n.gro && m.GSOType != netdev.GSONone {
		ip := frame[header.EthernetMinimumSize:]
		hl := header.IPv6MinimumSize
		if m.GSOType == netdev.GSOTCPv4 {
			hl = int(header.IPv4(ip).HeaderLength())
		}
		header.TCP(ip[hl:]).SetChecksum(0xdead)
		m.NeedsCsum = false
	}
	select {
	case n.peer.in <- offFrame{frame, m}:
		return nil
	case <-n.closed:
		return netdev.ErrDown
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *offNIC) Receive(ctx context.Context, buf []byte) (int, error) {
	k, _, err := n.ReceiveMeta(ctx, buf)
	return k, err
}

func (n *offNIC) ReceiveMeta(ctx context.Context, buf []byte) (int, netdev.Meta, error) {
	select {
	case f := <-n.in:
		if len(f.b) > len(buf) {
			panic("offNIC: receive buffer smaller than MaxRxFrame")
		}
		return copy(buf, f.b), f.m, nil
	case <-n.closed:
		return 0, netdev.Meta{}, netdev.ErrDown
	case <-ctx.Done():
		return 0, netdev.Meta{}, ctx.Err()
	}
}

func (n *offNIC) stats() (sent []netdev.Meta, big, maxFrame int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]netdev.Meta(nil), n.sent...), n.big, n.max
}

func (n *offNIC) maxSegment() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seg
}

type protoMeta struct {
	proto tcpip.TransportProtocolNumber
	m     netdev.Meta
}

// l4Proto is the transport protocol of an IPv4 or IPv6 frame, 0 for
// other frames.
func l4Proto(f []byte) tcpip.TransportProtocolNumber {
	switch header.Ethernet(f).Type() {
	case header.IPv4ProtocolNumber:
		return header.IPv4(f[header.EthernetMinimumSize:]).TransportProtocol()
	case header.IPv6ProtocolNumber:
		return header.IPv6(f[header.EthernetMinimumSize:]).TransportProtocol()
	}
	return 0
}

var fullOffload = netdev.Offloads{TxCsum: true, TxTCPv4: true, TxTCPv6: true, Rx: true, MaxTxFrame: 65535, MaxRxFrame: 65535 + 18}

// TestLinkGSOEndpoint checks what the endpoint tells gVisor for each
// kind of NIC: GSO only when the NIC segments TCP over both IP versions.
func TestLinkGSOEndpoint(t *testing.T) {
	plain, _ := nictest.Pipe(1500)
	v4only := fullOffload
	v4only.TxTCPv6 = false
	rxOnly := netdev.Offloads{TxCsum: true, Rx: true, MaxTxFrame: 1518, MaxRxFrame: 65553}
	for _, tc := range []struct {
		name    string
		nic     netdev.NIC
		gso     stack.SupportedGSO
		maxSize uint32
		rxBuf   int
	}{
		{name: "plain NIC", nic: plain, gso: stack.GSONotSupported, rxBuf: 1514},
		{name: "full offload", nic: func() netdev.NIC { a, _ := offPipe(fullOffload); return a }(), gso: stack.HostGSOSupported, maxSize: 65535 - 14, rxBuf: 65553},
		{name: "tcpv4 only", nic: func() netdev.NIC { a, _ := offPipe(v4only); return a }(), gso: stack.GSONotSupported, rxBuf: 65553},
		{name: "rx only", nic: func() netdev.NIC { a, _ := offPipe(rxOnly); return a }(), gso: stack.GSONotSupported, rxBuf: 65553},
		{name: "no offloads", nic: func() netdev.NIC { a, _ := offPipe(netdev.Offloads{MaxTxFrame: 1514, MaxRxFrame: 1514}); return a }(), gso: stack.GSONotSupported, rxBuf: 1514},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := newLinkEP(tc.nic)
			if err != nil {
				t.Fatal(err)
			}
			got := []any{e.SupportedGSO(), e.GSOMaxSize(), max(e.frameCap(), e.off.MaxRxFrame), e.Capabilities()}
			want := []any{tc.gso, tc.maxSize, tc.rxBuf, stack.CapabilityResolutionRequired}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("SupportedGSO, GSOMaxSize, receive buffer, Capabilities (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLinkOffloadTransfer runs TCP both ways and UDP between two stacks
// over an offloading cable: gVisor's TCP sends segments far larger than
// the MTU with GSO metadata and partial checksums, the receiving side
// takes them whole and completes their checksums, and the bytes arrive
// intact. UDP keeps complete checksums (no Meta).
func TestLinkOffloadTransfer(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(map[bool]string{false: "partial", true: "validated"}[gro], func(t *testing.T) { testLinkOffloadTransfer(t, gro) })
	}
}

// testLinkOffloadTransfer is TestLinkOffloadTransfer with GSO frames
// received with partial checksums, or (gro) validated with wrong ones.
func testLinkOffloadTransfer(t *testing.T, gro bool) {
	na, nb := offPipe(fullOffload)
	na.gro, nb.gro = gro, gro
	a, err := New(Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrA, 24), netip.PrefixFrom(addrA6, 64)}, NoSLAAC: true, NoDAD: true}, na)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrB, 24), netip.PrefixFrom(addrB6, 64)}, NoSLAAC: true, NoDAD: true}, nb)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	msg := make([]byte, 4<<20)
	for i := range msg {
		msg[i] = byte(i*7 + i>>12)
	}
	for _, tc := range []struct {
		peer    netip.Addr
		gsoType netdev.GSOType
	}{
		{addrB, netdev.GSOTCPv4},
		{addrB6, netdev.GSOTCPv6},
	} {
		t.Run(tc.peer.String(), func(t *testing.T) {
			sentBefore, _, _ := na.stats()
			nictest.TCPEcho(t, a.Gvisor(), b.Gvisor(), tc.peer, msg, 30*time.Second)
			sent, big, maxFrame := na.stats()
			gso := 0
			for _, m := range sent[len(sentBefore):] {
				if m.GSOType != netdev.GSONone {
					gso++
					if m.GSOType != tc.gsoType || m.GSOSize < 1000 {
						t.Fatalf("GSO frame with %+v, want type %d and an MSS near the MTU", m, tc.gsoType)
					}
				}
			}
			// 4 MiB in 1460-byte segments would be about 2900 frames.
			if gso < 10 || big < 10 || maxFrame <= 1514 || maxFrame > 65535 {
				t.Errorf("%d GSO frames, %d larger than the MTU's, largest %d bytes", gso, big, maxFrame)
			}
			// The segments the NIC cuts must fit the MTU.
			if seg := na.maxSegment(); seg > 1500 {
				t.Errorf("GSO frames would be cut into %d-byte IP packets, over the 1500-byte MTU", seg)
			}
			for _, e := range []*Stack{a, b} {
				if d := e.eps[0].rxCsumBad.Load(); d != 0 {
					t.Errorf("%d received frames whose checksum could not be completed", d)
				}
				if d := e.Gvisor().Stats().TCP.ChecksumErrors.Value(); d != 0 {
					t.Errorf("gVisor dropped %d TCP segments with bad checksums", d)
				}
			}
		})
	}
	t.Run("udp", func(t *testing.T) {
		local := fullAddr(addrB, 9)
		us, err := gonet.DialUDP(b.Gvisor(), &local, nil, proto(addrB))
		if err != nil {
			t.Fatal(err)
		}
		defer us.Close()
		uc, err := gonet.DialUDP(a.Gvisor(), nil, &local, proto(addrB))
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		if _, err := uc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		us.SetDeadline(time.Now().Add(10 * time.Second))
		if n, _, err := us.ReadFrom(buf); err != nil || string(buf[:n]) != "ping" {
			t.Fatalf("UDP got %q, %v", buf[:n], err)
		}
	})
	// Only TCP frames carry Meta; UDP, ICMP and ARP have complete
	// checksums.
	for _, n := range []*offNIC{na, nb} {
		n.mu.Lock()
		for pm, count := range n.metaOf {
			if pm.proto != header.TCPProtocolNumber && pm.m != (netdev.Meta{}) {
				t.Errorf("%d frames of protocol %d sent with %+v", count, pm.proto, pm.m)
			}
		}
		if n.metaOf[protoMeta{header.UDPProtocolNumber, netdev.Meta{}}] == 0 && n == na {
			t.Error("no UDP frame sent")
		}
		n.mu.Unlock()
	}
}

// l4Packet builds an Ethernet frame carrying a TCP or UDP segment with a
// correct checksum, over IPv4 or IPv6, and returns it with the offset of
// its transport header.
func l4Packet(v6 bool, proto tcpip.TransportProtocolNumber, payload int) ([]byte, int) {
	src4, dst4 := tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	src6, dst6 := tcpip.AddrFrom16([16]byte{0: 0xfd, 15: 1}), tcpip.AddrFrom16([16]byte{0: 0xfd, 15: 2})
	l4len := header.TCPMinimumSize + payload
	if proto == header.UDPProtocolNumber {
		l4len = header.UDPMinimumSize + payload
	}
	ipLen, ethType := header.IPv4MinimumSize, header.IPv4ProtocolNumber
	src, dst := src4, dst4
	if v6 {
		ipLen, ethType, src, dst = header.IPv6MinimumSize, header.IPv6ProtocolNumber, src6, dst6
	}
	f := make([]byte, header.EthernetMinimumSize+ipLen+l4len)
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: "\x02\x00\x00\x00\x00\x02", Type: ethType})
	ip := f[header.EthernetMinimumSize:]
	if v6 {
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(l4len), TransportProtocol: proto, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{TotalLength: uint16(ipLen + l4len), TTL: 64, Protocol: uint8(proto), SrcAddr: src, DstAddr: dst})
		h.SetChecksum(^h.CalculateChecksum())
	}
	l4 := ip[ipLen:]
	for i := range payload {
		l4[len(l4)-payload+i] = byte(i*13 + 5)
	}
	pseudo := header.PseudoHeaderChecksum(proto, src, dst, uint16(l4len))
	if proto == header.TCPProtocolNumber {
		header.TCP(l4).Encode(&header.TCPFields{SrcPort: 1000, DstPort: 80, SeqNum: 7, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 100})
		header.TCP(l4).SetChecksum(^checksum.Checksum(l4, pseudo))
	} else {
		header.UDP(l4).Encode(&header.UDPFields{SrcPort: 1000, DstPort: 53, Length: uint16(l4len)})
		header.UDP(l4).SetChecksum(^checksum.Checksum(l4, pseudo))
	}
	return f, header.EthernetMinimumSize + ipLen
}

// TestCompleteChecksum turns correct packets into partial ones (the
// pseudo-header sum in the checksum field, as a sender with checksum
// offload leaves them) and checks completeChecksum restores them, and
// that it refuses what it cannot complete.
func TestCompleteChecksum(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v6      bool
		proto   tcpip.TransportProtocolNumber
		payload int
	}{
		{"tcpv4", false, header.TCPProtocolNumber, 1000},
		{"tcpv4 64k", false, header.TCPProtocolNumber, 65535 - 40},
		{"udpv4", false, header.UDPProtocolNumber, 333},
		{"tcpv6", true, header.TCPProtocolNumber, 1001},
		{"tcpv6 64k", true, header.TCPProtocolNumber, 65535 - 20},
		{"udpv6", true, header.UDPProtocolNumber, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, l4 := l4Packet(tc.v6, tc.proto, tc.payload)
			partial := append([]byte(nil), want...)
			off := l4 + header.TCPChecksumOffset
			if tc.proto == header.UDPProtocolNumber {
				off = l4 + udpChecksumOffset
			}
			ip := want[header.EthernetMinimumSize:]
			var src, dst tcpip.Address
			if tc.v6 {
				src, dst = header.IPv6(ip).SourceAddress(), header.IPv6(ip).DestinationAddress()
			} else {
				src, dst = header.IPv4(ip).SourceAddress(), header.IPv4(ip).DestinationAddress()
			}
			binary.BigEndian.PutUint16(partial[off:], header.PseudoHeaderChecksum(tc.proto, src, dst, uint16(len(want)-l4)))
			if bytes.Equal(partial, want) {
				t.Fatal("the partial packet is the complete one")
			}
			if !completeChecksum(partial, false) {
				t.Fatal("completeChecksum refused the packet")
			}
			if diff := cmp.Diff(want, partial); diff != "" {
				t.Errorf("completed packet (-want +got):\n%s", diff)
			}
			// Afresh, from a wrong checksum.
			binary.BigEndian.PutUint16(partial[off:], 0x1234)
			if !completeChecksum(partial, true) {
				t.Fatal("completeChecksum afresh refused the packet")
			}
			if diff := cmp.Diff(want, partial); diff != "" {
				t.Errorf("packet checksummed afresh (-want +got):\n%s", diff)
			}
		})
	}
	tcp4, _ := l4Packet(false, header.TCPProtocolNumber, 100)
	tcp6, _ := l4Packet(true, header.TCPProtocolNumber, 100)
	edit := func(f []byte, fn func([]byte)) []byte {
		f = append([]byte(nil), f...)
		fn(f[header.EthernetMinimumSize:])
		return f
	}
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"fragment", edit(tcp4, func(ip []byte) { header.IPv4(ip).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0) })},
		{"later fragment", edit(tcp4, func(ip []byte) { header.IPv4(ip).SetFlagsFragmentOffset(0, 64) })},
		{"icmp", edit(tcp4, func(ip []byte) { ip[9] = 1 })},
		{"ipv4 longer than the frame", edit(tcp4, func(ip []byte) { header.IPv4(ip).SetTotalLength(2000) })},
		{"ipv4 header length 4 bytes", edit(tcp4, func(ip []byte) { ip[0] = 0x41 })},
		{"tcp shorter than its header", edit(tcp4, func(ip []byte) { header.IPv4(ip).SetTotalLength(30) })},
		{"ipv6 extension header", edit(tcp6, func(ip []byte) { ip[6] = 0 })},
		{"ipv6 longer than the frame", edit(tcp6, func(ip []byte) { header.IPv6(ip).SetPayloadLength(3000) })},
		{"truncated ipv4", tcp4[:30]},
		{"truncated ipv6", tcp6[:50]},
		{"arp", edit(tcp4[:header.EthernetMinimumSize+28], func([]byte) {})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.frame
			if tc.name == "arp" {
				binary.BigEndian.PutUint16(f[12:], uint16(header.ARPProtocolNumber))
			}
			for _, fresh := range []bool{false, true} {
				if completeChecksum(f, fresh) {
					t.Errorf("completeChecksum (afresh %v) took it", fresh)
				}
			}
		})
	}
}

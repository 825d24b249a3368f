package netstack

import (
	"testing"

	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/netstack/nictest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// sink is a stack.NetworkDispatcher that reads what it is given.
type sink struct{ n, bytes int }

func (s *sink) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	s.n++
	s.bytes += len(pkt.Data().AsRange().ToSlice())
}

func (*sink) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// FuzzLinkReceive hands two received frames (the first twice) with the
// Meta a NIC could give them to the link endpoint's delivery, through
// GRO, and flushes: nothing may panic, and after the flush GRO holds
// nothing.
func FuzzLinkReceive(f *testing.F) {
	v4 := tcpSegment(false, 1000, 1, make([]byte, 100))
	v4next := tcpSegment(false, 1000, 101, make([]byte, 100))
	v6 := tcpSegment(true, 2000, 1, make([]byte, 50))
	ack := tcpSegment(false, 4000, 1, nil)
	udp, _ := l4Packet(false, header.UDPProtocolNumber, 10)
	for _, c := range []struct {
		a, b  []byte
		flags byte
	}{
		{v4, v4next, 0},
		{v4, v4next, 2},
		{v6, v6, 1},
		{append(ack, make([]byte, 60-len(ack))...), v4, 0},
		{udp, v4[:40], 0},
		{v4[:20], v6[:54], 1 | 4},
		{v4, v4next, 2 | 8 | 16},
	} {
		f.Add(c.a, c.b, c.flags, uint16(1448))
	}
	f.Fuzz(func(t *testing.T, a, b []byte, flags byte, gsoSize uint16) {
		if len(a) < header.EthernetMinimumSize || len(b) < header.EthernetMinimumSize || len(a) > 1<<16 || len(b) > 1<<16 {
			return // the receive loop drops these before delivery
		}
		_, nic := nictest.Pipe(1500)
		e, err := newLinkEP(nic)
		if err != nil {
			t.Fatal(err)
		}
		m := netdev.Meta{NeedsCsum: flags&1 != 0, CsumValidated: flags&2 != 0, GSOSize: gsoSize}
		switch flags >> 2 & 7 {
		case 1:
			m.GSOType = netdev.GSOTCPv4
		case 2:
			m.GSOType = netdev.GSOTCPv6
		}
		var q rxQueue
		q.g.Init(true)
		q.g.Dispatcher = &q.out
		var s sink
		q.out.NetworkDispatcher = &s
		for _, fr := range [][]byte{a, b, a} {
			e.deliver(&q, append([]byte(nil), fr...), m)
		}
		q.flush()
		n := s.n
		q.held = 1 // make flush look again
		q.flush()
		if s.n != n {
			t.Errorf("a second flush delivered %d more packets: GRO kept them", s.n-n)
		}
	})
}

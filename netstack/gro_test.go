package netstack

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/netstack/nictest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// delivery is a packet as the link endpoint handed it to the stack.
type delivery struct {
	Proto   tcpip.NetworkProtocolNumber
	CsumOK  bool   // the IPv4 header and transport checksums hold
	Port    uint16 // source port of a TCP or UDP packet
	Payload []byte // the transport payload
}

// recorder is a stack.NetworkDispatcher that records what it is given.
type recorder struct{ got chan delivery }

func (r *recorder) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	b := pkt.Data().AsRange().ToSlice()
	d := delivery{Proto: p, CsumOK: true}
	var l4 []byte
	var proto uint8
	var src, dst tcpip.Address
	switch p {
	case header.IPv4ProtocolNumber:
		h := header.IPv4(b)
		l4, proto = b[h.HeaderLength():h.TotalLength()], h.Protocol()
		src, dst = h.SourceAddress(), h.DestinationAddress()
		d.CsumOK = h.IsChecksumValid()
	case header.IPv6ProtocolNumber:
		h := header.IPv6(b)
		l4, proto = b[header.IPv6MinimumSize:header.IPv6MinimumSize+int(h.PayloadLength())], h.NextHeader()
		src, dst = h.SourceAddress(), h.DestinationAddress()
	}
	sum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(len(l4)))
	d.CsumOK = d.CsumOK && checksum.Checksum(l4, sum) == 0xffff
	switch tcpip.TransportProtocolNumber(proto) {
	case header.TCPProtocolNumber:
		d.Port, d.Payload = header.TCP(l4).SourcePort(), l4[header.TCP(l4).DataOffset():]
	case header.UDPProtocolNumber:
		d.Port, d.Payload = header.UDP(l4).SourcePort(), l4[header.UDPMinimumSize:]
	}
	r.got <- d
}

func (*recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// tcpSegment is an Ethernet frame with a TCP segment from port with
// sequence number seq carrying payload, checksums correct.
func tcpSegment(v6 bool, port uint16, seq uint32, payload []byte) []byte {
	f, l4off := l4Packet(v6, header.TCPProtocolNumber, len(payload))
	l4 := header.TCP(f[l4off:])
	copy(l4[header.TCPMinimumSize:], payload)
	l4.SetSourcePort(port)
	l4.SetSequenceNumber(seq)
	l4.SetChecksum(0)
	var src, dst tcpip.Address
	if ip := f[header.EthernetMinimumSize:]; v6 {
		src, dst = header.IPv6(ip).SourceAddress(), header.IPv6(ip).DestinationAddress()
	} else {
		src, dst = header.IPv4(ip).SourceAddress(), header.IPv4(ip).DestinationAddress()
	}
	l4.SetChecksum(^checksum.Checksum(l4, header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(l4)))))
	return f
}

// TestLinkGRO queues a burst of frames before the endpoint starts
// receiving and checks what reaches the stack: in-order TCP segments of
// a connection arrive as one packet with checksums that hold (also for
// two connections GRO keeps in one bucket, and over IPv6 without NIC
// checksum offload), and what is not a valid TCP segment arrives alone for
// gVisor to check.
func TestLinkGRO(t *testing.T) {
	chunk := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100) }
	var frames [][]byte
	var want []delivery
	flow := func(v6 bool, port uint16, n int) {
		var all []byte
		for i := range n {
			all = append(all, chunk(int(port)+i)...)
		}
		proto := header.IPv4ProtocolNumber
		if v6 {
			proto = header.IPv6ProtocolNumber
		}
		want = append(want, delivery{Proto: proto, CsumOK: true, Port: port, Payload: all})
	}
	// Two IPv4 connections whose GRO hash (a sum of addresses and ports)
	// falls in one bucket, interleaved, and one over IPv6.
	flow(false, 1000, 4)
	flow(false, 1008, 3)
	flow(true, 2000, 3)
	for i := range 4 {
		frames = append(frames, tcpSegment(false, 1000, uint32(1+100*i), chunk(1000+i)))
		if i < 3 {
			frames = append(frames, tcpSegment(false, 1008, uint32(1+100*i), chunk(1008+i)))
			frames = append(frames, tcpSegment(true, 2000, uint32(1+100*i), chunk(2000+i)))
		}
	}
	// A pure ACK in a minimum-size frame: the Ethernet padding must not
	// count as payload.
	ack := tcpSegment(false, 4000, 1, nil)
	frames = append(frames, append(ack, make([]byte, 60-len(ack))...))
	want = append(want, delivery{Proto: header.IPv4ProtocolNumber, CsumOK: true, Port: 4000, Payload: []byte{}})
	// A segment with a bad checksum goes up alone for gVisor to drop,
	// and so does UDP.
	bad := tcpSegment(false, 3000, 1, chunk(3000))
	bad[len(bad)-1] ^= 0xff
	frames = append(frames, bad)
	want = append(want, delivery{Proto: header.IPv4ProtocolNumber, Port: 3000, Payload: bad[len(bad)-100:]})
	udp, _ := l4Packet(true, header.UDPProtocolNumber, 10)
	frames = append(frames, udp)
	want = append(want, delivery{Proto: header.IPv6ProtocolNumber, CsumOK: true, Port: 1000, Payload: udp[len(udp)-10:]})

	a, b := nictest.Pipe(1500)
	e, err := newLinkEP(b)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	defer a.Close()
	for _, f := range frames {
		if err := a.Transmit(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{got: make(chan delivery, len(frames))}
	e.Attach(r)
	var got []delivery
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case d := <-r.got:
			got = append(got, d)
		case <-timeout:
			t.Fatalf("%d of %d packets delivered: %v", len(got), len(want), summary(got))
		}
	}
	e.Attach(nil)
	e.Wait()
	close(r.got)
	for d := range r.got {
		got = append(got, d)
	}
	order := func(ds []delivery) {
		sort.Slice(ds, func(i, j int) bool {
			return ds[i].Port < ds[j].Port || ds[i].Port == ds[j].Port && ds[i].Proto < ds[j].Proto
		})
	}
	order(got)
	order(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delivered (-want +got):\n%s\nwant %v\ngot  %v", diff, summary(want), summary(got))
	}
}

// summary is a short description of deliveries for failure messages.
func summary(ds []delivery) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("{%#x port %d, %d bytes, checksums ok %v}", d.Proto, d.Port, len(d.Payload), d.CsumOK))
	}
	return fmt.Sprint(s)
}

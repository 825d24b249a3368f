package nat

import (
	"time"

	"github.com/unikgo/unikgo/services/packet"
)

// Outbound translates a frame from a client towards upstream in place:
// the source address becomes the public address and the source port (or
// ICMP echo identifier) the flow's outside port. A packet matching no flow
// opens one if Config.Admit allows it. ICMP errors a client sends about a
// flow's inbound packets are translated too, including the quoted header.
//
// The caller must already have checked that the source address belongs to
// the client interface the frame arrived on (anti-spoofing) and that the
// destination is upstream: the table trusts the source address it is given.
// TTL/hop limit and MAC addresses are the forwarding path's to update.
func (t *Table) Outbound(frame []byte, now time.Time) (Verdict, error) {
	p := &t.pkt
	pub, err := t.parse(frame, p)
	if err != nil {
		return t.drop(err)
	}
	ts := t.clock(now)
	switch {
	case p.Tuple.Proto == packet.ProtoTCP || p.Tuple.Proto == packet.ProtoUDP || isEcho(p, true):
	case p.Inner.Valid:
		return t.outboundError(frame, p, pub, ts)
	default:
		return t.drop(ErrUnsupported)
	}
	i := t.lookupInside(&p.Tuple)
	if i != nilIdx && t.expired(i, ts) {
		t.remove(i)
		t.stats.Expired++
		i = nilIdx
	}
	if i == nilIdx {
		if p.Tuple.Proto == packet.ProtoTCP && p.TCPFlags&packet.TCPFlagRST != 0 {
			t.stats.NoFlow++
			return Drop, ErrNoFlow
		}
		if t.cfg.Admit != nil && !t.cfg.Admit(p) {
			t.stats.Denied++
			return Deny, nil
		}
		if i, err = t.create(&p.Tuple, p.TCPFlags, ts); err != nil {
			return Drop, err
		}
	}
	t.observe(i, dirOut, p.TCPFlags, ts)
	rewriteOuter(frame, p, true, pub, t.flow(i).pubPort, true)
	t.stats.Translated++
	return Forward, nil
}

// Inbound translates a frame from upstream addressed to the public address
// back to the client of the flow it belongs to: replies of TCP, UDP and
// ICMP echo flows, and ICMP errors quoting a flow's outbound packet.
func (t *Table) Inbound(frame []byte, now time.Time) (Verdict, error) {
	p := &t.pkt
	pub, err := t.parse(frame, p)
	if err != nil {
		return t.drop(err)
	}
	if p.Tuple.Dst != pub {
		return t.drop(ErrNotPublic)
	}
	ts := t.clock(now)
	switch {
	case p.Tuple.Proto == packet.ProtoTCP || p.Tuple.Proto == packet.ProtoUDP || isEcho(p, false):
	case p.Inner.Valid:
		return t.inboundError(frame, p, pub, ts)
	default:
		return t.drop(ErrUnsupported)
	}
	i := t.lookupOutside(p.Tuple.Proto, &p.Tuple.Src, p.Tuple.SrcPort, p.Tuple.DstPort)
	if i == nilIdx || t.expired(i, ts) {
		return t.noFlow(i)
	}
	t.observe(i, dirIn, p.TCPFlags, ts)
	f := t.flow(i)
	rewriteOuter(frame, p, false, f.key.Src, f.key.SrcPort, true)
	t.stats.Translated++
	return Forward, nil
}

// parse parses frame into p and returns the public address of its family.
func (t *Table) parse(frame []byte, p *packet.Packet) (packet.Addr, error) {
	if err := packet.Parse(frame, p); err != nil {
		return packet.Addr{}, err
	}
	var pub packet.Addr
	switch {
	case p.IsIPv4():
		pub = t.pub4
	case p.IsIPv6():
		pub = t.pub6
	default:
		return packet.Addr{}, ErrUnsupported
	}
	if pub.IsZero() {
		return packet.Addr{}, ErrNoPublicAddr
	}
	if p.Frag.Kind != packet.NotFragment {
		return packet.Addr{}, ErrFragment
	}
	if p.SegmentsLeft != 0 {
		// The destination is only the next hop of a source route: replies
		// would come from elsewhere and the checksum covers the final hop.
		return packet.Addr{}, ErrUnsupported
	}
	return pub, nil
}

func (t *Table) drop(err error) (Verdict, error) {
	t.stats.Dropped++
	return Drop, err
}

// noFlow reports a miss, reclaiming the expired flow i if there is one.
func (t *Table) noFlow(i int32) (Verdict, error) {
	if i != nilIdx {
		t.remove(i)
		t.stats.Expired++
	}
	t.stats.NoFlow++
	return Drop, ErrNoFlow
}

// isEcho reports an echo request (outbound) or echo reply (inbound).
func isEcho(p *packet.Packet, request bool) bool {
	switch p.Tuple.Proto {
	case packet.ProtoICMPv4:
		if request {
			return p.ICMPType == packet.ICMPv4EchoRequest
		}
		return p.ICMPType == packet.ICMPv4EchoReply
	case packet.ProtoICMPv6:
		if request {
			return p.ICMPType == packet.ICMPv6EchoRequest
		}
		return p.ICMPType == packet.ICMPv6EchoReply
	}
	return false
}

// inboundError translates an ICMP error from upstream that quotes a packet
// the table sent for a client: the quote's source is the public address and
// outside port, which become the client's again, as does the destination.
// Errors do not refresh the flow: anyone on the path can forge them.
func (t *Table) inboundError(frame []byte, p *packet.Packet, pub packet.Addr, now int64) (Verdict, error) {
	in := &p.Inner
	if !in.HasPorts || in.Tuple.Src != pub {
		t.stats.NoFlow++
		return Drop, ErrNoFlow
	}
	i := t.lookupOutside(in.Tuple.Proto, &in.Tuple.Dst, in.Tuple.DstPort, in.Tuple.SrcPort)
	if i == nilIdx || t.expired(i, now) {
		return t.noFlow(i)
	}
	if valid, _ := packet.TransportChecksumValid(frame, p); !valid {
		return t.drop(ErrBadChecksum)
	}
	f := t.flow(i)
	rewriteInner(frame, p, true, f.key.Src, f.key.SrcPort)
	rewriteOuter(frame, p, false, f.key.Src, 0, false)
	recomputeICMP(frame, p)
	t.stats.Translated++
	return Forward, nil
}

// outboundError translates an ICMP error a client sends about a packet it
// received through a flow (port unreachable, packet too big...): the quote
// names the client as destination, which becomes the public address and
// outside port, and the error's source becomes the public address.
func (t *Table) outboundError(frame []byte, p *packet.Packet, pub packet.Addr, now int64) (Verdict, error) {
	in := &p.Inner
	if !in.HasPorts {
		t.stats.NoFlow++
		return Drop, ErrNoFlow
	}
	k := in.Tuple.Reverse()
	i := t.lookupInside(&k)
	if i != nilIdx && t.expired(i, now) {
		return t.noFlow(i)
	}
	// A client may only report errors about its own flows.
	if i == nilIdx || k.Src != p.Tuple.Src {
		return t.noFlow(nilIdx)
	}
	if valid, _ := packet.TransportChecksumValid(frame, p); !valid {
		return t.drop(ErrBadChecksum)
	}
	rewriteInner(frame, p, false, pub, t.flow(i).pubPort)
	rewriteOuter(frame, p, true, pub, 0, false)
	recomputeICMP(frame, p)
	t.stats.Translated++
	return Forward, nil
}

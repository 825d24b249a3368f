package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/unikgo/unikgo/netdev"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// linkEP is an Ethernet stack.LinkEndpoint over a netdev.NIC. A receive
// goroutine, started on Attach, copies each frame into a packet buffer and
// delivers it; WritePackets flattens each packet into one frame and hands it
// to the NIC on the caller's goroutine.
//
// Offload. Over a netdev.OffloadNIC that takes partial checksums and TCP
// GSO frames over both IPv4 and IPv6, the endpoint is a
// stack.GSOEndpoint with HostGSOSupported: gVisor's TCP then writes
// segments of up to GSOMaxSize bytes with the pseudo-header checksum in
// the TCP checksum field (GSO.NeedsCsum, Linux's CHECKSUM_PARTIAL), and
// WritePackets hands them over with a netdev.Meta saying so (a GSO type
// and the MSS when the payload exceeds it). Other packets (UDP, ICMP, ARP)
// keep complete checksums: the endpoint does not claim
// CapabilityTXChecksumOffload, with which gVisor would leave UDP
// checksums unset. Received frames up to the NIC's MaxRxFrame are
// delivered as they are, a GSO frame as one large TCP segment; a frame
// whose checksum the NIC says is partial has it completed here (and a GSO
// frame the NIC says it validated has it computed afresh), since the
// endpoint does not claim CapabilityRXChecksumOffload either (gVisor would
// then skip the IPv4 header and every TCP and UDP check for every frame,
// and the NIC validates only some).
//
// Bursts. TCP segments whose checksums hold go through gVisor's GRO,
// which joins in-order segments of a connection into one packet of up to
// 64 KiB (see rxQueue). Over a netdev.BacklogNIC it is flushed once no
// frame waits (or after maxBurst frames), so TCP and the socket above it
// work per burst, not per segment, as over Linux's NAPI and GRO; over
// another NIC each frame goes up alone.
type linkEP struct {
	nic netdev.NIC
	mac tcpip.LinkAddress
	// onic is nic if it is an OffloadNIC whose offloads are used; off
	// is what it does.
	onic netdev.OffloadNIC
	off  netdev.Offloads

	mtu atomic.Uint32

	// ctx ends when the endpoint closes; it bounds Transmit and Receive.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.RWMutex
	disp     stack.NetworkDispatcher // +checklocks:mu
	rxCancel context.CancelFunc      // +checklocks:mu; stops the running receive goroutine
	onClose  func()                  // +checklocks:mu

	wg        sync.WaitGroup
	closeOnce sync.Once
	frames    sync.Pool // *[]byte of frameCap bytes
	rxDrops   atomic.Uint64
	txDrops   atomic.Uint64
	// rxCsumBad counts received frames with a partial checksum that
	// could not be completed (not TCP or UDP over IPv4 or IPv6 without
	// extension headers, a fragment, lengths that do not add up).
	rxCsumBad atomic.Uint64
}

var (
	_ stack.LinkEndpoint = (*linkEP)(nil)
	_ stack.GSOEndpoint  = (*linkEP)(nil)
)

func newLinkEP(nic netdev.NIC) (*linkEP, error) {
	mac := nic.MAC()
	if len(mac) != header.EthernetAddressSize {
		return nil, fmt.Errorf("netstack: NIC has a %d-byte MAC, want 6", len(mac))
	}
	if nic.MTU() < header.IPv4MinimumMTU || nic.MTU() > 65535-header.EthernetMinimumSize {
		return nil, fmt.Errorf("netstack: NIC MTU %d out of range [%d, %d]", nic.MTU(), header.IPv4MinimumMTU, 65535-header.EthernetMinimumSize)
	}
	e := &linkEP{nic: nic, mac: tcpip.LinkAddress(mac)}
	if o, ok := nic.(netdev.OffloadNIC); ok {
		off := o.Offloads()
		frame := header.EthernetMinimumSize + nic.MTU()
		if off.MaxTxFrame > 65535 || off.MaxRxFrame > 1<<17 {
			return nil, fmt.Errorf("netstack: NIC offloads %+v: frames over 64 KiB", off)
		}
		gso := off.TxCsum && off.TxTCPv4 && off.TxTCPv6 && off.MaxTxFrame > frame
		if gso || off.Rx {
			e.onic, e.off = o, off
			if !gso {
				e.off.TxTCPv4, e.off.TxTCPv6, e.off.MaxTxFrame = false, false, frame
			}
			if !off.Rx || off.MaxRxFrame < frame {
				e.off.Rx, e.off.MaxRxFrame = false, frame
			}
		}
	}
	e.mtu.Store(uint32(nic.MTU()))
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.frames.New = func() any {
		b := make([]byte, max(e.frameCap(), e.off.MaxTxFrame))
		return &b
	}
	return e, nil
}

// gso reports whether gVisor may hand the endpoint TCP GSO packets.
func (e *linkEP) gso() bool { return e.off.TxTCPv4 && e.off.TxTCPv6 }

// SupportedGSO implements stack.GSOEndpoint: HostGSOSupported over a NIC
// that segments TCP over IPv4 and IPv6 itself.
func (e *linkEP) SupportedGSO() stack.SupportedGSO {
	if e.gso() {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// GSOMaxSize implements stack.GSOEndpoint: the largest IP packet the NIC
// takes as one GSO frame (gVisor keeps a TCP segment's payload
// TCPTotalHeaderMaximumSize bytes below it).
func (e *linkEP) GSOMaxSize() uint32 {
	if e.gso() {
		return uint32(e.off.MaxTxFrame - header.EthernetMinimumSize)
	}
	return 0
}

// txMeta is what the NIC is told about pkt: a partial checksum for the
// packets gVisor's TCP wrote one into, and GSO for those whose payload
// exceeds the MSS.
func (e *linkEP) txMeta(pkt *stack.PacketBuffer) netdev.Meta {
	g := pkt.GSOOptions
	if !e.gso() || g.Type == stack.GSONone || !g.NeedsCsum {
		return netdev.Meta{}
	}
	m := netdev.Meta{NeedsCsum: true}
	if g.MSS > 0 && pkt.Data().Size() > int(g.MSS) {
		switch g.Type {
		case stack.GSOTCPv4:
			m.GSOType = netdev.GSOTCPv4
		case stack.GSOTCPv6:
			m.GSOType = netdev.GSOTCPv6
		}
		if m.GSOType != netdev.GSONone {
			m.GSOSize = g.MSS
		}
	}
	return m
}

// frameCap is the largest frame the link carries: header plus the NIC's MTU.
func (e *linkEP) frameCap() int { return header.EthernetMinimumSize + e.nic.MTU() }

// MTU implements stack.LinkEndpoint: the IP MTU, the Ethernet header excluded.
func (e *linkEP) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint; it can only lower the MTU, since
// the NIC cannot carry frames larger than its own.
func (e *linkEP) SetMTU(mtu uint32) {
	if mtu <= uint32(e.nic.MTU()) {
		e.mtu.Store(mtu)
	}
}

// MaxHeaderLength implements stack.LinkEndpoint.
func (*linkEP) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *linkEP) LinkAddress() tcpip.LinkAddress { return e.mac }

// SetLinkAddress implements stack.LinkEndpoint; the NIC's MAC is fixed.
func (*linkEP) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint.
func (*linkEP) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// Attach implements stack.LinkEndpoint. A non-nil dispatcher starts the
// receive goroutine if none runs; a nil one (NIC removal) stops delivery and
// tells the goroutine to stop, without waiting for it: gVisor detaches while
// holding the stack's lock, which a frame being delivered may need. Wait
// waits for the goroutine.
func (e *linkEP) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.disp = d
	switch {
	case d == nil && e.rxCancel != nil:
		e.rxCancel()
		e.rxCancel = nil
	case d != nil && e.rxCancel == nil && e.ctx.Err() == nil:
		ctx, cancel := context.WithCancel(e.ctx)
		e.rxCancel = cancel
		e.wg.Add(1)
		go e.receive(ctx)
	}
}

// stop ends the receive goroutine and waits for it. Stack.Close calls it
// before gVisor's Stack.Wait, which waits for link endpoints while holding
// the stack's lock and only closes them (ending Receive) after releasing it.
func (e *linkEP) stop() {
	e.mu.Lock()
	if e.rxCancel != nil {
		e.rxCancel()
		e.rxCancel = nil
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// IsAttached implements stack.LinkEndpoint.
func (e *linkEP) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.disp != nil
}

// Wait implements stack.LinkEndpoint: it waits for the receive goroutine.
func (e *linkEP) Wait() { e.wg.Wait() }

// ARPHardwareType implements stack.LinkEndpoint.
func (*linkEP) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.
func (e *linkEP) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = e.mac
	}
	eth.Encode(&header.EthernetFields{
		SrcAddr: src,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint.
func (*linkEP) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Close implements stack.LinkEndpoint: it stops the receive goroutine and
// closes the NIC, once; later calls do nothing.
func (e *linkEP) Close() {
	e.mu.Lock()
	f := e.onClose
	e.onClose = nil
	if e.rxCancel != nil {
		e.rxCancel()
		e.rxCancel = nil
	}
	e.mu.Unlock()
	if f != nil {
		f()
	}
	e.closeOnce.Do(func() {
		e.cancel()
		e.nic.Close()
	})
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (e *linkEP) SetOnCloseAction(f func()) {
	e.mu.Lock()
	e.onClose = f
	e.mu.Unlock()
}

// WritePackets implements stack.LinkWriter. A packet the NIC refuses is
// dropped and counted, as a full ring drops on real hardware; only a dead
// device is reported, so that the stack stops retrying.
func (e *linkEP) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	bp := e.frames.Get().(*[]byte)
	defer e.frames.Put(bp)
	n := 0
	for _, pkt := range pkts.AsSlice() {
		m := e.txMeta(pkt)
		limit := e.frameCap()
		if m.GSOType != netdev.GSONone {
			limit = e.off.MaxTxFrame
		}
		if pkt.Size() > limit {
			// Larger than the link: the stack honours MTU and
			// GSOMaxSize, so this is a bug upstream; drop rather than
			// send a giant.
			e.txDrops.Add(1)
			n++
			continue
		}
		f := (*bp)[:0]
		for _, s := range pkt.AsSlices() {
			f = append(f, s...)
		}
		var err error
		if m != (netdev.Meta{}) {
			err = e.onic.TransmitMeta(e.ctx, f, m)
		} else {
			err = e.nic.Transmit(e.ctx, f)
		}
		if err != nil {
			if errors.Is(err, netdev.ErrDown) || e.ctx.Err() != nil {
				if n == 0 {
					return 0, &tcpip.ErrClosedForSend{}
				}
				return n, nil
			}
			e.txDrops.Add(1)
		}
		n++
	}
	return n, nil
}

// maxBurst bounds the frames held for coalescing before they go up.
const maxBurst = 64

// receive delivers frames from the NIC until it goes down or the endpoint
// closes.
func (e *linkEP) receive(ctx context.Context) {
	defer e.wg.Done()
	buf := make([]byte, max(e.frameCap(), e.off.MaxRxFrame))
	backlog, burst := e.nic.(netdev.BacklogNIC)
	var q rxQueue
	q.g.Init(burst)
	q.g.Dispatcher = &q.out
	defer q.flush()
	for {
		if q.held > 0 && (!burst || q.held >= maxBurst || backlog.RxBacklog() == 0) {
			q.flush()
		}
		var n int
		var m netdev.Meta
		var err error
		if e.off.Rx {
			n, m, err = e.onic.ReceiveMeta(ctx, buf)
		} else {
			n, err = e.nic.Receive(ctx, buf)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, netdev.ErrDown) {
				return
			}
			e.rxDrops.Add(1)
			continue
		}
		if n < header.EthernetMinimumSize {
			e.rxDrops.Add(1)
			continue
		}
		e.mu.RLock()
		d := e.disp
		e.mu.RUnlock()
		if d != q.out.NetworkDispatcher {
			q.flush()
			q.out.NetworkDispatcher = d
		}
		if d == nil || ctx.Err() != nil {
			continue
		}
		e.deliver(&q, buf[:n], m)
	}
}

// deliver hands a received frame with its Meta to q's dispatcher: a TCP
// segment whose checksums hold through GRO, anything else directly.
func (e *linkEP) deliver(q *rxQueue, frame []byte, m netdev.Meta) {
	// A GSO frame the backend validated without a partial checksum is
	// trusted as Linux netfront trusts it (CHECKSUM_UNNECESSARY): the
	// checksum of a coalesced segment need not be its own, and gVisor
	// checks every one, so it is computed afresh.
	fresh := m.GSOType != netdev.GSONone && m.CsumValidated && !m.NeedsCsum
	if (m.NeedsCsum || fresh) && !completeChecksum(frame, fresh) {
		e.rxCsumBad.Add(1)
		return
	}
	eth := header.Ethernet(frame)
	// A TCP segment whose checksums hold goes to GRO trimmed to its IP
	// length, so Ethernet padding is not taken for payload.
	tcpLen, valid := tcpChecked(frame, m.CsumValidated || m.NeedsCsum)
	if valid {
		frame = frame[:header.EthernetMinimumSize+tcpLen]
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		Payload: buffer.MakeWithData(frame),
	})
	defer pkt.DecRef()
	switch dst := eth.DestinationAddress(); {
	case dst == header.EthernetBroadcastAddress:
		pkt.PktType = tcpip.PacketBroadcast
	case header.IsMulticastEthernetAddress(dst):
		pkt.PktType = tcpip.PacketMulticast
	case dst == e.mac:
		pkt.PktType = tcpip.PacketHost
	default:
		pkt.PktType = tcpip.PacketOtherHost
	}
	if !e.ParseHeader(pkt) {
		return
	}
	pkt.NetworkProtocolNumber = eth.Type()
	if valid {
		pkt.RXChecksumValidated = true
		q.g.Enqueue(pkt)
		q.held++
		return
	}
	// gVisor validates it; what GRO holds goes first, so a connection's
	// segments stay in order.
	q.flush()
	q.out.NetworkDispatcher.DeliverNetworkPacket(eth.Type(), pkt)
}

// rxQueue is gVisor's GRO as the receive loop uses it. Only TCP segments
// whose checksums were verified go in, marked RXChecksumValidated (GRO
// takes no other), which the stack does not trust (see groOut): GRO's
// own check of an unverified one sums from the wrong offset when the
// PacketBuffer starts with a link header (PacketData.ChecksumAtOffset
// counts from the buffer, not the data), so it would send each up alone.
type rxQueue struct {
	g    gro.GRO
	out  groOut
	held int // frames enqueued since the last flush
}

// flush sends up everything GRO holds. GRO's Flush sends only the first
// packet of each bucket (it walks the list from an element it has just
// removed, whose next link is cleared), so it is repeated until a round
// delivers nothing.
func (q *rxQueue) flush() {
	if q.held == 0 {
		return
	}
	for {
		n := q.out.n
		q.g.Flush()
		if q.out.n == n {
			break
		}
	}
	q.held = 0
}

// groOut is the dispatcher GRO delivers to. It counts the packets, and
// gives a packet GRO joined from several segments the checksums of what it
// now is: GRO leaves the first segment's TCP checksum and IPv4 header
// checksum, and gVisor checks both for every packet (its NIC overrides
// RXChecksumValidated with whether the endpoint claims
// CapabilityRXChecksumOffload, which this one does not).
type groOut struct {
	stack.NetworkDispatcher
	n uint64
}

func (o *groOut) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	o.n++
	if vl, _ := pkt.AsViewList(); vl.Len() > 1 {
		rechecksum(p, pkt)
	}
	o.NetworkDispatcher.DeliverNetworkPacket(p, pkt)
}

// rechecksum computes afresh the IPv4 header checksum and the TCP
// checksum of pkt, a TCP packet over IPv4 or over IPv6 without extension
// headers, as GRO hands it up: the link header consumed, the rest not.
func rechecksum(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	var hl int
	var src, dst tcpip.Address
	switch p {
	case header.IPv4ProtocolNumber:
		b, ok := pkt.Data().PullUp(header.IPv4MinimumSize)
		if !ok {
			return
		}
		hl = int(header.IPv4(b).HeaderLength())
	case header.IPv6ProtocolNumber:
		hl = header.IPv6MinimumSize
	default:
		return
	}
	b, ok := pkt.Data().PullUp(hl + header.TCPMinimumSize)
	if !ok {
		return
	}
	if p == header.IPv4ProtocolNumber {
		ip := header.IPv4(b)
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	} else {
		src, dst = header.IPv6(b).SourceAddress(), header.IPv6(b).DestinationAddress()
	}
	tcp := header.TCP(b[hl:])
	tcp.SetChecksum(0)
	size := pkt.Data().Size() - hl
	var c checksum.Checksumer
	vl, off := pkt.AsViewList()
	skip := off + pkt.HeaderSize() + hl // the TCP header's offset in vl
	for v := vl.Front(); v != nil; v = v.Next() {
		sl := v.AsSlice()
		if skip >= len(sl) {
			skip -= len(sl)
			continue
		}
		c.Add(sl[skip:])
		skip = 0
	}
	tcp.SetChecksum(^checksum.Combine(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(size)), c.Checksum()))
}

// tcpChecked reports whether an Ethernet frame holds a TCP segment over
// IPv4 (not a fragment, with a valid header checksum) or IPv6 without
// extension headers whose checksum holds, and how long its IP packet is.
// With l4Valid the NIC vouched for the TCP checksum (or it was completed
// here) and it is not summed again; the IPv4 header checksum, which no NIC
// here vouches for, always is.
func tcpChecked(frame []byte, l4Valid bool) (ipLen int, ok bool) {
	s, ok := transportOf(frame)
	if !ok || s.proto != header.TCPProtocolNumber || len(s.l4) < header.TCPMinimumSize {
		return 0, false
	}
	if s.ip4 != nil && !s.ip4.IsChecksumValid() {
		return 0, false
	}
	if !l4Valid {
		sum := header.PseudoHeaderChecksum(s.proto, s.src, s.dst, uint16(len(s.l4)))
		if checksum.Checksum(s.l4, sum) != 0xffff {
			return 0, false
		}
	}
	return s.ipLen, true
}

// transport is the TCP or UDP segment an IP packet in a frame carries.
type transport struct {
	proto    tcpip.TransportProtocolNumber
	l4       []byte // the segment, headers and payload, up to the IP length
	src, dst tcpip.Address
	ip4      header.IPv4 // the IPv4 header, nil over IPv6
	ipLen    int         // the IP packet's length, headers included
}

// transportOf finds the transport segment of an Ethernet frame holding
// IPv4 (not a fragment) or IPv6 without extension headers; it reports
// false for anything else or lengths that do not add up.
func transportOf(frame []byte) (transport, bool) {
	var s transport
	if len(frame) < header.EthernetMinimumSize {
		return s, false
	}
	ip := frame[header.EthernetMinimumSize:]
	var proto uint8
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		h := header.IPv4(ip)
		if len(ip) < header.IPv4MinimumSize {
			return s, false
		}
		hl, total := int(h.HeaderLength()), int(h.TotalLength())
		if hl < header.IPv4MinimumSize || total < hl || total > len(ip) || h.More() || h.FragmentOffset() != 0 {
			return s, false
		}
		proto, s.l4, s.ipLen, s.ip4 = h.Protocol(), ip[hl:total], total, h[:hl]
		s.src, s.dst = h.SourceAddress(), h.DestinationAddress()
	case header.IPv6ProtocolNumber:
		h := header.IPv6(ip)
		if len(ip) < header.IPv6MinimumSize {
			return s, false
		}
		end := header.IPv6MinimumSize + int(h.PayloadLength())
		if end > len(ip) {
			return s, false
		}
		proto, s.l4, s.ipLen = h.NextHeader(), ip[header.IPv6MinimumSize:end], end
		s.src, s.dst = h.SourceAddress(), h.DestinationAddress()
	default:
		return s, false
	}
	s.proto = tcpip.TransportProtocolNumber(proto)
	return s, s.proto == header.TCPProtocolNumber || s.proto == header.UDPProtocolNumber
}

// completeChecksum completes the partial TCP or UDP checksum of an
// Ethernet frame, as Linux's skb_checksum_help does: the checksum field
// holds the sum of the pseudo-header, and the one's complement of the sum
// over the whole transport segment (that field included) goes there. With
// fresh, whatever the field holds is first replaced by the pseudo-header
// sum. It handles IPv4 (not fragments) and IPv6 without extension
// headers, and reports false for anything else or lengths that do not add
// up.
func completeChecksum(frame []byte, fresh bool) bool {
	s, ok := transportOf(frame)
	if !ok {
		return false
	}
	hl, off := header.UDPMinimumSize, udpChecksumOffset
	if s.proto == header.TCPProtocolNumber {
		hl, off = header.TCPMinimumSize, header.TCPChecksumOffset
	}
	if len(s.l4) < hl {
		return false
	}
	if fresh {
		binary.BigEndian.PutUint16(s.l4[off:], header.PseudoHeaderChecksum(s.proto, s.src, s.dst, uint16(len(s.l4))))
	}
	sum := ^checksum.Checksum(s.l4, 0)
	if sum == 0 && off == udpChecksumOffset {
		sum = 0xffff // zero says "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(s.l4[off:], sum)
	return true
}

// udpChecksumOffset is where a UDP header holds its checksum.
const udpChecksumOffset = 6

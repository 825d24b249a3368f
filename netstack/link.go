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

// receive delivers frames from the NIC until it goes down or the endpoint
// closes.
func (e *linkEP) receive(ctx context.Context) {
	defer e.wg.Done()
	buf := make([]byte, max(e.frameCap(), e.off.MaxRxFrame))
	for {
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
		// A GSO frame the backend validated without a partial checksum
		// is trusted as Linux netfront trusts it (CHECKSUM_UNNECESSARY):
		// the checksum of a coalesced segment need not be its own, and
		// gVisor checks every one, so it is computed afresh.
		fresh := m.GSOType != netdev.GSONone && m.CsumValidated && !m.NeedsCsum
		if (m.NeedsCsum || fresh) && !completeChecksum(buf[:n], fresh) {
			e.rxCsumBad.Add(1)
			continue
		}
		e.mu.RLock()
		d := e.disp
		e.mu.RUnlock()
		if d == nil || ctx.Err() != nil {
			continue
		}
		eth := header.Ethernet(buf[:n])
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
			Payload: buffer.MakeWithData(buf[:n]),
		})
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
		if e.ParseHeader(pkt) {
			d.DeliverNetworkPacket(eth.Type(), pkt)
		}
		pkt.DecRef()
	}
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
	eth := header.Ethernet(frame)
	ip := frame[header.EthernetMinimumSize:]
	var proto uint8
	var l4 []byte
	var src, dst tcpip.Address
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		h := header.IPv4(ip)
		if len(ip) < header.IPv4MinimumSize {
			return false
		}
		hl, total := int(h.HeaderLength()), int(h.TotalLength())
		if hl < header.IPv4MinimumSize || total < hl || total > len(ip) || h.More() || h.FragmentOffset() != 0 {
			return false
		}
		proto, l4 = h.Protocol(), ip[hl:total]
		src, dst = h.SourceAddress(), h.DestinationAddress()
	case header.IPv6ProtocolNumber:
		h := header.IPv6(ip)
		if len(ip) < header.IPv6MinimumSize {
			return false
		}
		end := header.IPv6MinimumSize + int(h.PayloadLength())
		if end > len(ip) {
			return false
		}
		proto, l4 = h.NextHeader(), ip[header.IPv6MinimumSize:end]
		src, dst = h.SourceAddress(), h.DestinationAddress()
	default:
		return false
	}
	var off int
	switch tcpip.TransportProtocolNumber(proto) {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return false
		}
		off = header.TCPChecksumOffset
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			return false
		}
		off = udpChecksumOffset
	default:
		return false
	}
	if fresh {
		binary.BigEndian.PutUint16(l4[off:], header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(len(l4))))
	}
	sum := ^checksum.Checksum(l4, 0)
	if sum == 0 && off == udpChecksumOffset {
		sum = 0xffff // zero says "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(l4[off:], sum)
	return true
}

// udpChecksumOffset is where a UDP header holds its checksum.
const udpChecksumOffset = 6

package netstack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/unikgo/unikgo/netdev"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkEP is an Ethernet stack.LinkEndpoint over a netdev.NIC. A receive
// goroutine, started on Attach, copies each frame into a packet buffer and
// delivers it; WritePackets flattens each packet into one frame and hands it
// to the NIC on the caller's goroutine.
type linkEP struct {
	nic netdev.NIC
	mac tcpip.LinkAddress

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
}

var _ stack.LinkEndpoint = (*linkEP)(nil)

func newLinkEP(nic netdev.NIC) (*linkEP, error) {
	mac := nic.MAC()
	if len(mac) != header.EthernetAddressSize {
		return nil, fmt.Errorf("netstack: NIC has a %d-byte MAC, want 6", len(mac))
	}
	if nic.MTU() < header.IPv4MinimumMTU || nic.MTU() > 65535-header.EthernetMinimumSize {
		return nil, fmt.Errorf("netstack: NIC MTU %d out of range [%d, %d]", nic.MTU(), header.IPv4MinimumMTU, 65535-header.EthernetMinimumSize)
	}
	e := &linkEP{nic: nic, mac: tcpip.LinkAddress(mac)}
	e.mtu.Store(uint32(nic.MTU()))
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.frames.New = func() any {
		b := make([]byte, e.frameCap())
		return &b
	}
	return e, nil
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
		f := (*bp)[:0]
		for _, s := range pkt.AsSlices() {
			f = append(f, s...)
		}
		if len(f) > cap(*bp) {
			// Larger than the link: the stack honours MTU, so this is
			// a bug upstream; drop rather than send a giant.
			e.txDrops.Add(1)
			n++
			continue
		}
		if err := e.nic.Transmit(e.ctx, f); err != nil {
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
	buf := make([]byte, e.frameCap())
	for {
		n, err := e.nic.Receive(ctx, buf)
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

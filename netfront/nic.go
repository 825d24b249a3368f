package netfront

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"sync"
	"time"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

// Limits and defaults.
const (
	// DefaultRxBuffers is the number of receive pages: enough to keep the
	// 256-entry rx ring full.
	DefaultRxBuffers = 256
	// DefaultTxBuffers is the number of transmit pages, one per slot in
	// flight; at most 256, the tx ring's size.
	DefaultTxBuffers = 256
	// MaxTxBuffers is the tx ring's size: a tx id names one of them.
	MaxTxBuffers = 256
	// DefaultReconnectTimeout bounds how long the NIC waits for a backend
	// that went away to come back before it goes down.
	DefaultReconnectTimeout = time.Minute
	// closeTimeout bounds the xenstore handshake of Close.
	closeTimeout = 10 * time.Second
	// retryEvery is how often the driver retries what it could not do on
	// an event: posting receive buffers when grants ran out, revoking
	// grants the backend held.
	retryEvery = 100 * time.Millisecond
)

// Config is what New needs: where the vif is, and the Xen services the
// driver uses. The zero value of each limit picks its default.
type Config struct {
	// Store is this domain's xenstore connection.
	Store *xenstore.Client
	// Grants is this domain's grant table (*gnttab.Table).
	Grants GrantTable
	// Events allocates the event channel (see EventChannels).
	Events EventChannels
	// Memory gives the ring and buffer pages (dma.System() in a guest).
	Memory dma.Allocator
	// Device is the vif's id: the name of its directory under device/vif
	// ("0" for the first).
	Device string

	// RxBuffers is the number of receive pages (default
	// DefaultRxBuffers, at least SlotsMin+1). Frames waiting for Receive
	// hold theirs, so more than 256 lets the ring stay full meanwhile.
	RxBuffers int
	// TxBuffers is the number of transmit pages (default
	// DefaultTxBuffers, 1 to MaxTxBuffers).
	TxBuffers int
	// ReconnectTimeout bounds a reconnection (default
	// DefaultReconnectTimeout).
	ReconnectTimeout time.Duration
	// Offload turns on checksum and segmentation offload, negotiated
	// with the backend as Linux netfront does: the frontend takes
	// partial checksums and GSO packets of up to 64 KiB on the rx ring
	// (feature-gso-tcpv4/v6, feature-ipv6-csum-offload, no
	// feature-no-csum-offload), and sends TCP segments of up to 64 KiB
	// with a GSO extra info slot if the backend offers feature-sg and
	// feature-gso-tcpv4/v6. The NIC is then a netdev.OffloadNIC whose
	// Offloads say what the first connection agreed. Receive then
	// returns such frames too, without saying so: only for users of
	// ReceiveMeta (netstack is one). Off, frames travel whole and
	// checked, as before.
	Offload bool
}

// Errors particular to this driver. netdev.ErrDown is returned as the
// netdev contract says.
var (
	// ErrLinkDown is returned by Transmit while the backend is away (it
	// left Connected and the driver is reconnecting): the frame is
	// dropped, as on an unplugged cable. Receive just waits.
	ErrLinkDown = errors.New("netfront: the backend is not connected; frame dropped")
	// ErrFrameSize is a frame shorter than an Ethernet header or longer
	// than the link carries.
	ErrFrameSize = errors.New("netfront: frame size outside the link's limits")
	// ErrBackendBroken is wrapped by the error of a NIC the backend took
	// down by breaking the ring protocol (a producer index past what it
	// can have produced). Like Linux netfront's "broken" state it is
	// final; the error also wraps netdev.ErrDown.
	ErrBackendBroken = errors.New("netfront: the backend broke the ring protocol; the NIC is disabled")
)

// Stats counts what happened to frames and to the backend's answers.
type Stats struct {
	RxFrames   uint64 // delivered by Receive
	RxBytes    uint64
	RxDropped  uint64 // larger than the caller's buffer
	RxErrors   uint64 // packets the backend answered with an error status
	RxBad      uint64 // packets with malformed responses (id, offset, size, flags, chains, extra info)
	RxOversize uint64 // packets shorter than a header or longer than MTU allows
	TxFrames   uint64 // queued by Transmit
	TxBytes    uint64
	TxErrors   uint64 // slots the backend answered with ERROR or DROPPED
	TxBad      uint64 // responses naming no slot in flight, NULL or with unknown status
	TxOrphans  uint64 // slots whose response never came (another took its place)
	TxLinkDown uint64 // frames dropped while the backend was away
	Reconnects uint64
	// TxGSO counts GSO frames queued by TransmitMeta; RxGSO GSO frames
	// received (both also in TxFrames, RxFrames). TxNoOffload counts
	// frames refused because the connected backend does not do the
	// offload they ask for (it reconnected with fewer features).
	TxGSO, RxGSO, TxNoOffload uint64
	// LeakedPages are pages the backend kept when it should have let go:
	// quarantined (never reused) until a later revoke succeeds.
	LeakedPages int
}

// rx buffer states.
const (
	rxFree uint8 = iota
	rxPosted
	rxReady // holds a frame for Receive
	rxQuarantined
)

// tx slot states.
const (
	txFree uint8 = iota
	txInflight
	txQuarantined
)

type txSlot struct {
	state uint8
	gen   uint8 // the id's upper byte: a stale response names an old one
	ref   gnttab.Ref
}

// rxSeg is the part of a receive page that holds part of a frame.
type rxSeg struct {
	buf      uint16
	off, len uint16
}

// rxPacket is a received frame waiting for Receive, in its pages (whose
// grants are already revoked: the backend can no longer write them).
type rxPacket struct {
	n      int
	length int
	meta   netdev.Meta
	seg    [SlotsMin]rxSeg
}

// NIC is a Xen virtual network interface (vif). It implements netdev.NIC.
type NIC struct {
	cfg      Config
	fe       *xenbus.Frontend
	mac      net.HardwareAddr
	mtu      int
	maxFrame int // Ethernet header, VLAN tag, MTU
	off      netdev.Offloads

	ctx       context.Context // the supervisor's lifetime
	cancel    context.CancelFunc
	superDone chan struct{}

	enterMu sync.RWMutex
	closed  bool
	calls   sync.WaitGroup

	down chan struct{} // closed when failed is set

	mu            sync.Mutex
	conn          *conn // connected; nil while (re)connecting
	live          *conn // set when the supervisor exits: what Close tears down
	connectedOnce bool
	failed        error // permanent; wraps netdev.ErrDown

	rxPages *pageSet
	rxState []uint8
	rxFree  []uint16
	rxQuar  []quarantined
	rxReady chan rxPacket

	txPages *pageSet
	tx      []txSlot
	txFree  []uint16
	txQuar  []quarantined
	txWake  chan struct{} // closed and replaced when tx space may have appeared

	stats Stats
}

var _ netdev.OffloadNIC = (*NIC)(nil)
var _ netdev.BacklogNIC = (*NIC)(nil)

// New connects to the vif cfg.Device the toolstack gave this domain
// (device/vif/<id> in xenstore) and returns once the backend is
// Connected. ctx bounds the handshake only. The NIC then follows the
// backend on its own: if the backend closes, the rings are rebuilt when it
// comes back.
//
// Wiring in a unikgo guest (devices/xenglue):
//
//	d, _ := xenglue.Open()
//	ids, _ := xenbus.Devices(ctx, d.Store, "vif") // e.g. ["0"]
//	nic, err := netfront.New(ctx, netfront.Config{
//		Store: d.Store, Grants: d.Grants, Memory: d.Memory, Device: ids[0],
//		Events: ports{d}, // AllocUnbound returns d.AllocUnbound(remote)
//	})
func New(ctx context.Context, cfg Config) (*NIC, error) {
	if cfg.Store == nil || cfg.Grants == nil || cfg.Events == nil || cfg.Memory == nil {
		return nil, errors.New("netfront: Config needs Store, Grants, Events and Memory")
	}
	if cfg.RxBuffers == 0 {
		cfg.RxBuffers = DefaultRxBuffers
	}
	if cfg.RxBuffers < SlotsMin+1 || cfg.RxBuffers > 1<<16 {
		return nil, fmt.Errorf("netfront: RxBuffers %d is outside %d..%d", cfg.RxBuffers, SlotsMin+1, 1<<16)
	}
	if cfg.TxBuffers == 0 {
		cfg.TxBuffers = DefaultTxBuffers
	}
	if cfg.TxBuffers < 1 || cfg.TxBuffers > MaxTxBuffers {
		return nil, fmt.Errorf("netfront: TxBuffers %d is outside 1..%d", cfg.TxBuffers, MaxTxBuffers)
	}
	if cfg.ReconnectTimeout == 0 {
		cfg.ReconnectTimeout = DefaultReconnectTimeout
	}
	fe, err := xenbus.OpenFrontend(ctx, cfg.Store, "vif", cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("netfront: vif %s: %w", cfg.Device, err)
	}
	n := &NIC{
		cfg:       cfg,
		fe:        fe,
		superDone: make(chan struct{}),
		down:      make(chan struct{}),
		txWake:    make(chan struct{}),
		rxReady:   make(chan rxPacket, cfg.RxBuffers),
		rxState:   make([]uint8, cfg.RxBuffers),
		tx:        make([]txSlot, cfg.TxBuffers),
	}
	if n.rxPages, err = allocPages(cfg.Memory, cfg.RxBuffers); err != nil {
		return nil, fmt.Errorf("netfront: vif %s: allocating %d receive pages: %w", cfg.Device, cfg.RxBuffers, err)
	}
	if n.txPages, err = allocPages(cfg.Memory, cfg.TxBuffers); err != nil {
		n.rxPages.free(cfg.Memory, nil)
		return nil, fmt.Errorf("netfront: vif %s: allocating %d transmit pages: %w", cfg.Device, cfg.TxBuffers, err)
	}
	for i := cfg.RxBuffers - 1; i >= 0; i-- {
		n.rxFree = append(n.rxFree, uint16(i))
	}
	for i := cfg.TxBuffers - 1; i >= 0; i-- {
		n.txFree = append(n.txFree, uint16(i))
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	c, err := n.connect(ctx, false)
	if err != nil {
		n.cancel()
		n.freePages()
		return nil, fmt.Errorf("netfront: vif %s: %w", cfg.Device, err)
	}
	go n.supervise(c)
	return n, nil
}

// MAC implements netdev.NIC: the backend's "mac" key (the frontend's if
// the backend has none).
func (n *NIC) MAC() net.HardwareAddr { return append(net.HardwareAddr(nil), n.mac...) }

// MTU implements netdev.NIC: the toolstack's "mtu" (DefaultMTU if none),
// held to DefaultMTU if the backend takes no multi-slot packets.
func (n *NIC) MTU() int { return n.mtu }

// LinkUp reports whether the backend is connected.
func (n *NIC) LinkUp() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conn != nil
}

// Stats returns the driver's counters.
func (n *NIC) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stats
	s.LeakedPages += len(n.rxQuar) + len(n.txQuar)
	return s
}

// enter admits a Transmit or Receive; Close waits for them.
func (n *NIC) enter() bool {
	n.enterMu.RLock()
	defer n.enterMu.RUnlock()
	if n.closed {
		return false
	}
	n.calls.Add(1)
	return true
}

// downError is the error of a NIC that is down.
func (n *NIC) downError() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failed != nil {
		return n.failed
	}
	return netdev.ErrDown
}

// fail takes the NIC down for good: Transmit and Receive return err
// (which wraps netdev.ErrDown) from then on.
func (n *NIC) fail(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failLocked(err)
}

func (n *NIC) failLocked(err error) {
	if n.failed != nil {
		return
	}
	if !errors.Is(err, netdev.ErrDown) {
		err = fmt.Errorf("%w: %w", netdev.ErrDown, err)
	}
	n.failed = err
	if c := n.conn; c != nil {
		c.dead = true // nothing more is read from a ring the backend broke
		n.conn = nil
	}
	close(n.down)
	n.wakeTxLocked()
}

// wakeTxLocked wakes every Transmit waiting for ring space or pages.
func (n *NIC) wakeTxLocked() {
	close(n.txWake)
	n.txWake = make(chan struct{})
}

// ErrOffload is returned by TransmitMeta for a frame whose Meta asks for
// an offload the backend does not do (or no longer does, after
// reconnecting): the frame is dropped.
var ErrOffload = errors.New("netfront: the backend does not do the offload the frame asks for; frame dropped")

// MaxRxGSOFrame is the largest frame received with offloads on: an
// Ethernet header, a VLAN tag and the largest IP packet.
const MaxRxGSOFrame = EthHeader + VLANTag + 0xFFFF

// Offloads implements netdev.OffloadNIC: what the first connection
// agreed, nothing without Config.Offload.
func (n *NIC) Offloads() netdev.Offloads { return n.off }

// offloads is what a NIC with Config cfg and link parameters p does.
func offloads(cfg Config, p params, maxFrame int) netdev.Offloads {
	o := netdev.Offloads{MaxTxFrame: maxFrame, MaxRxFrame: maxFrame}
	if !cfg.Offload {
		return o
	}
	// Linux netback always takes NETTXF_csum_blank; GSO frames need as
	// many pages as a 64 KiB frame has.
	o.TxCsum, o.Rx, o.MaxRxFrame = true, true, MaxRxGSOFrame
	if cfg.TxBuffers >= (MaxTxSize+PageSize-1)/PageSize {
		o.TxTCPv4, o.TxTCPv6 = p.gso4, p.gso6
	}
	if o.TxTCPv4 || o.TxTCPv6 {
		o.MaxTxFrame = MaxTxSize
	}
	return o
}

// Transmit implements netdev.NIC. The frame is copied into transmit pages
// (one per 4 KiB), granted read-only to the backend and queued; the pages
// come back when the backend answers. Transmit waits for free pages and
// ring space while ctx lasts. While the backend is away it drops the
// frame and returns ErrLinkDown; once the NIC is down it returns an error
// wrapping netdev.ErrDown.
func (n *NIC) Transmit(ctx context.Context, frame []byte) error {
	return n.TransmitMeta(ctx, frame, netdev.Meta{})
}

// TransmitMeta implements netdev.OffloadNIC: Transmit for a frame with a
// partial checksum (sent with NETTXF_csum_blank) or a TCP segment to cut
// (sent with a GSO extra info slot), as Offloads allow. A frame whose
// offload the connected backend does not do is dropped with ErrOffload.
func (n *NIC) TransmitMeta(ctx context.Context, frame []byte, m netdev.Meta) error {
	if !n.enter() {
		return netdev.ErrDown
	}
	defer n.calls.Done()
	var gsoType uint8
	switch m.GSOType {
	case netdev.GSONone:
		if m.GSOSize != 0 {
			return fmt.Errorf("%w: GSO size %d without a GSO type", ErrOffload, m.GSOSize)
		}
	case netdev.GSOTCPv4:
		gsoType = GSOTypeTCPv4
	case netdev.GSOTCPv6:
		gsoType = GSOTypeTCPv6
	default:
		return fmt.Errorf("%w: GSO type %d", ErrOffload, m.GSOType)
	}
	switch {
	case m.CsumValidated:
		return fmt.Errorf("%w: CsumValidated is for received frames", ErrOffload)
	case m.NeedsCsum && !n.off.TxCsum:
		return fmt.Errorf("%w: checksum offload is off", ErrOffload)
	case gsoType != GSOTypeNone && (m.GSOSize == 0 || !m.NeedsCsum):
		// Linux netback takes a zero GSO size for a fatal error and
		// disables the vif.
		return fmt.Errorf("%w: GSO frame with size %d, partial checksum %v", ErrOffload, m.GSOSize, m.NeedsCsum)
	case m.GSOType == netdev.GSOTCPv4 && !n.off.TxTCPv4, m.GSOType == netdev.GSOTCPv6 && !n.off.TxTCPv6:
		return fmt.Errorf("%w: GSO type %d is off", ErrOffload, m.GSOType)
	}
	limit := n.maxFrame
	if gsoType != GSOTypeNone {
		limit = n.off.MaxTxFrame
	}
	if len(frame) < EthHeader || len(frame) > limit {
		return fmt.Errorf("%w: %d bytes, want %d to %d", ErrFrameSize, len(frame), EthHeader, limit)
	}
	k := (len(frame) + PageSize - 1) / PageSize
	extras := 0
	if gsoType != GSOTypeNone {
		extras = 1
	}
	for {
		n.mu.Lock()
		if n.failed != nil {
			err := n.failed
			n.mu.Unlock()
			return err
		}
		c := n.conn
		if c == nil {
			n.stats.TxLinkDown++
			n.mu.Unlock()
			return fmt.Errorf("%w (vif %s)", ErrLinkDown, n.cfg.Device)
		}
		if k > 1 && !c.sg {
			n.mu.Unlock()
			return fmt.Errorf("%w: %d bytes need %d slots and the backend does not offer %s", ErrFrameSize, len(frame), k, keySG)
		}
		if (gsoType == GSOTypeTCPv4 && !c.gso4) || (gsoType == GSOTypeTCPv6 && !c.gso6) {
			n.stats.TxNoOffload++
			n.mu.Unlock()
			return fmt.Errorf("%w (vif %s: GSO type %d)", ErrOffload, n.cfg.Device, gsoType)
		}
		if c.tx.Free() >= k+extras && len(n.txFree) >= k {
			err := n.sendLocked(c, frame, k, m.NeedsCsum, Extra{Type: ExtraGSO, GSOSize: m.GSOSize, GSOType: gsoType})
			n.mu.Unlock()
			return err
		}
		wake := n.txWake
		n.mu.Unlock()
		select {
		case <-wake:
		case <-n.down:
			return n.downError()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// RxBacklog implements netdev.BacklogNIC: received packets waiting for
// Receive.
func (n *NIC) RxBacklog() int { return len(n.rxReady) }

// Receive implements netdev.NIC. A frame longer than buf is dropped and
// counted in Stats.RxDropped. While the backend is away Receive waits;
// once the NIC is down it returns an error wrapping netdev.ErrDown.
func (n *NIC) Receive(ctx context.Context, buf []byte) (int, error) {
	k, _, err := n.ReceiveMeta(ctx, buf)
	return k, err
}

// ReceiveMeta implements netdev.OffloadNIC. With Config.Offload the
// backend may send frames up to MaxRxGSOFrame bytes (GSO), frames whose
// checksum it validated (NETRXF_data_validated) and frames whose checksum
// is partial (NETRXF_csum_blank: the frame came from the backend's host
// and never crossed a wire).
func (n *NIC) ReceiveMeta(ctx context.Context, buf []byte) (int, netdev.Meta, error) {
	if !n.enter() {
		return 0, netdev.Meta{}, netdev.ErrDown
	}
	defer n.calls.Done()
	for {
		select {
		case <-n.down:
			return 0, netdev.Meta{}, n.downError()
		default:
		}
		var p rxPacket
		select {
		case p = <-n.rxReady:
		case <-n.down:
			return 0, netdev.Meta{}, n.downError()
		case <-ctx.Done():
			return 0, netdev.Meta{}, ctx.Err()
		}
		if p.length > len(buf) {
			n.recycle(&p, false)
			continue
		}
		k := 0
		for _, s := range p.seg[:p.n] {
			k += copy(buf[k:], n.rxPages.bytes(int(s.buf))[s.off:s.off+s.len])
		}
		n.recycle(&p, true)
		return k, p.meta, nil
	}
}

// recycle gives p's pages back to the receive ring and counts p.
func (n *NIC) recycle(p *rxPacket, delivered bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if delivered {
		n.stats.RxFrames++
		n.stats.RxBytes += uint64(p.length)
		if p.meta.GSOType != netdev.GSONone {
			n.stats.RxGSO++
		}
	} else {
		n.stats.RxDropped++
	}
	for _, s := range p.seg[:p.n] {
		n.putRxLocked(int(s.buf))
	}
	if c := n.conn; c != nil {
		n.refillLocked(c)
	}
}

// Close implements netdev.NIC: calls in progress return an error wrapping
// netdev.ErrDown, the frontend goes through Closing to Closed, and the
// rings, grants and pages are released. Pages the backend still holds
// are leaked, never reused.
func (n *NIC) Close() error {
	n.enterMu.Lock()
	if n.closed {
		n.enterMu.Unlock()
		return netdev.ErrDown
	}
	n.closed = true
	n.enterMu.Unlock()
	n.fail(errors.New("netfront: closed"))
	n.calls.Wait()

	n.cancel()
	<-n.superDone
	n.mu.Lock()
	c := n.live
	n.mu.Unlock()

	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	// A frontend directory the toolstack already removed has nothing to
	// close.
	if err := n.fe.Close(ctx); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("netfront: vif %s: closing the xenbus connection: %w", n.cfg.Device, err))
	}
	if c != nil {
		n.retire(c)
		errs = append(errs, n.teardown(c))
	}
	errs = append(errs, n.freePages())
	return errors.Join(errs...)
}

// freePages takes back the frames nobody will receive, retries the
// quarantine and frees every chunk of pages the backend no longer holds.
func (n *NIC) freePages() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		select {
		case p := <-n.rxReady:
			for _, s := range p.seg[:p.n] {
				n.putRxLocked(int(s.buf))
			}
			continue
		default:
		}
		break
	}
	n.retryQuarantineLocked()
	var errs []error
	leaked := 0
	if n.rxPages != nil {
		l, err := n.rxPages.free(n.cfg.Memory, func(i int) bool { return n.rxState[i] == rxQuarantined })
		leaked += l
		errs = append(errs, err)
	}
	if n.txPages != nil {
		l, err := n.txPages.free(n.cfg.Memory, func(i int) bool { return n.tx[i].state == txQuarantined })
		leaked += l
		errs = append(errs, err)
	}
	errs = append(errs, leakedError(leaked))
	return errors.Join(errs...)
}

// grantDom is the backend's domain as gnttab names it.
func (n *NIC) grantDom() gnttab.DomID { return gnttab.DomID(n.fe.BackendID) }

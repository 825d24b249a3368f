// Package net is a virtio-net driver (Virtual I/O Device 1.0, section 5.1)
// on the virtio PCI transport: a netdev.NIC with one receive and one
// transmit queue (receiveq1 and transmitq1, 5.1.2).
//
// Features (5.1.3). The driver accepts VIRTIO_NET_F_MAC (the address is
// read from the configuration; without it the driver makes up a random
// locally administered one, 5.1.5), VIRTIO_NET_F_STATUS (LinkUp follows
// VIRTIO_NET_S_LINK_UP; without it the link is up) and VIRTIO_NET_F_MTU
// (MTU is the device's mtu, 68 or more; without it 1500). It offloads
// nothing: no checksum, segmentation or mergeable receive buffers, so
// every frame travels whole with a zeroed 12-byte struct virtio_net_hdr
// (the VERSION_1 layout with num_buffers, 5.1.6).
//
// Receiving (5.1.6.3, 5.1.6.4). Every receive descriptor is one buffer
// of header plus the largest frame (header, 18 bytes of Ethernet and VLAN
// header, MTU), so the device never needs more than one. Receive takes
// used buffers from the ring itself, copies the frame out and gives the
// buffer straight back to the device (the ring is refilled as it is
// consumed). While it finds buffers, the device's receive interrupts are
// off (VIRTQ_AVAIL_F_NO_INTERRUPT, 2.7.7); they are asked for again only
// before Receive sleeps, so a burst costs one interrupt, as Linux's NAPI
// polling does. Frames are checked before anyone sees
// them: a used length shorter than the header plus an Ethernet header,
// longer than the buffer, a header asking for GSO or checksum offload
// the driver did not negotiate, or num_buffers above 1 drops the frame
// and counts it in Stats.RxBad. A frame larger than the caller's buffer is
// dropped and counted in Stats.RxDropped.
//
// Transmitting (5.1.6.2). Transmit copies the frame behind a zeroed
// header into a buffer of its own, one descriptor, and notifies; buffers
// come back as the device uses them, and Transmit waits (within its
// context) when all are in flight.
//
// Failure. A used ring the virtio package finds broken, or
// DEVICE_NEEDS_RESET, sets FAILED and takes the NIC down: Transmit and
// Receive return netdev.ErrDown from then on, as they do after Close,
// which resets the device and frees its memory.
package net

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	stdnet "net"
	"sync"
	"sync/atomic"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/virtio"
)

// Feature bits (5.1.3).
const (
	FeatureCSUM      = 1 << 0
	FeatureGuestCSUM = 1 << 1
	FeatureMTU       = 1 << 3
	FeatureMAC       = 1 << 5
	FeatureGuestTSO4 = 1 << 7
	FeatureMrgRxBuf  = 1 << 15
	FeatureStatus    = 1 << 16
	FeatureCtrlVQ    = 1 << 17
	FeatureMQ        = 1 << 22
)

// Configuration (5.1.4, struct virtio_net_config).
const (
	cfgMAC    = 0
	cfgStatus = 6
	cfgMTU    = 10

	statusLinkUp = 1
)

// Header (5.1.6, struct virtio_net_hdr).
const (
	HeaderLen = 12

	HdrFNeedsCsum = 1
	HdrFDataValid = 2
	HdrFRSCInfo   = 4

	GSONone = 0
	GSOECN  = 0x80

	ethHeader = 14
	vlanTag   = 4
	minMTU    = 68
)

// Header is a parsed struct virtio_net_hdr.
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
	NumBuffers uint16
}

// ErrBadHeader is wrapped by errors about headers the driver cannot take.
var ErrBadHeader = errors.New("virtio-net: bad header from the device")

// ParseHeader reads a header from b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: %d bytes", ErrBadHeader, len(b))
	}
	return Header{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
		NumBuffers: binary.LittleEndian.Uint16(b[10:]),
	}, nil
}

// CheckRx validates a received buffer: the n bytes the device says it
// wrote into buf (header and frame) with no offloads negotiated and
// frames of at most maxFrame bytes. It returns the frame, a part of buf.
func CheckRx(buf []byte, n uint32, maxFrame int) ([]byte, error) {
	if uint64(n) > uint64(len(buf)) {
		return nil, fmt.Errorf("%w: %d bytes used of a %d-byte buffer", ErrBadHeader, n, len(buf))
	}
	if n < HeaderLen+ethHeader {
		return nil, fmt.Errorf("%w: %d bytes is less than a header and an Ethernet header", ErrBadHeader, n)
	}
	h, err := ParseHeader(buf)
	if err != nil {
		return nil, err
	}
	if h.GSOType != GSONone {
		return nil, fmt.Errorf("%w: GSO type %#x not negotiated", ErrBadHeader, h.GSOType)
	}
	if h.Flags&HdrFNeedsCsum != 0 {
		return nil, fmt.Errorf("%w: NEEDS_CSUM without VIRTIO_NET_F_GUEST_CSUM", ErrBadHeader)
	}
	if h.Flags&^(HdrFNeedsCsum|HdrFDataValid) != 0 {
		return nil, fmt.Errorf("%w: flags %#x", ErrBadHeader, h.Flags)
	}
	if h.NumBuffers > 1 {
		return nil, fmt.Errorf("%w: num_buffers %d without VIRTIO_NET_F_MRG_RXBUF", ErrBadHeader, h.NumBuffers)
	}
	frame := buf[HeaderLen:n]
	if len(frame) > maxFrame {
		return nil, fmt.Errorf("%w: %d-byte frame, at most %d", ErrBadHeader, len(frame), maxFrame)
	}
	return frame, nil
}

// Config tunes the driver; zero values take the defaults.
type Config struct {
	// QueueSize is the most descriptors per queue (default 256): receive
	// buffers posted and transmit buffers in flight.
	QueueSize int
	// RxMemory bounds the receive buffers' memory (default 4 MiB); with a
	// large MTU fewer buffers are posted.
	RxMemory int
}

// Stats counts what happened to frames.
type Stats struct {
	RxFrames  uint64 // delivered by Receive
	RxDropped uint64 // larger than the caller's buffer
	RxBad     uint64 // malformed by the device
	TxFrames  uint64 // queued by Transmit
	TxBad     uint64 // transmit buffers the device returned with a length
}

// NIC is one virtio-net interface.
type NIC struct {
	vd  *virtio.Device
	rxq *virtio.Queue
	txq *virtio.Queue
	mem dma.Allocator

	mac      stdnet.HardwareAddr
	mtu      int
	maxFrame int // Ethernet header, VLAN tag, MTU
	status   bool

	rxMem, txMem *dma.Region
	rxBuf, txBuf int           // bytes per buffer
	rxPosted     int           // receive buffers, all with the device or Receive
	rxTurn       chan struct{} // held by the Receive taking used buffers
	rxQuiet      bool          // receive interrupts off, as the rxTurn holder last set them
	txFree       chan int
	rxMu         sync.Mutex // orders Add and Kick on the receive queue
	rxSinceKick  int
	link         atomic.Bool
	down         chan struct{} // closed once the device is gone
	downOnce     sync.Once
	downErr      error
	stop         chan struct{}
	wg           sync.WaitGroup
	closeMu      sync.Mutex
	closed       bool
	rxN, rxDrop  atomic.Uint64
	rxBad        atomic.Uint64
	txN, txBad   atomic.Uint64
	calls        sync.WaitGroup
	enterMu      sync.RWMutex
}

var _ netdev.BacklogNIC = (*NIC)(nil)

// Probe finds every virtio-net function on the machine's PCI bus and
// starts a driver for each, with the kernel's DMA memory and interrupts.
// Transitional devices without the modern interface are skipped; other
// devices that fail are reported in the error, next to those that work.
func Probe(ctx context.Context) ([]*NIC, error) {
	h, err := pci.System()
	if err != nil {
		return nil, err
	}
	mem, err := dma.System()
	if err != nil {
		return nil, err
	}
	var nics []*NIC
	var errs []error
	for _, p := range virtio.Find(h, virtio.TypeNet) {
		n, err := New(ctx, p, virtio.Options{Mem: mem, Interrupts: pci.SystemInterrupt}, Config{})
		if err != nil {
			if errors.Is(err, virtio.ErrNoModern) && p.ID != virtio.ModernIDBase+virtio.TypeNet {
				continue
			}
			errs = append(errs, err)
			continue
		}
		nics = append(nics, n)
	}
	return nics, errors.Join(errs...)
}

// New starts the driver on the virtio-net function p.
func New(ctx context.Context, p *pci.Device, opts virtio.Options, cfg Config) (*NIC, error) {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 256
	}
	if cfg.RxMemory <= 0 {
		cfg.RxMemory = 4 << 20
	}
	vd, err := virtio.Open(ctx, p, opts)
	if err != nil {
		return nil, err
	}
	n := &NIC{vd: vd, mem: opts.Mem, down: make(chan struct{}), stop: make(chan struct{})}
	if err := n.setup(cfg); err != nil {
		vd.Fail()
		err = errors.Join(err, vd.Close())
		n.freeBuffers()
		return nil, err
	}
	return n, nil
}

func (n *NIC) setup(cfg Config) error {
	feat, err := n.vd.Negotiate(FeatureMAC | FeatureStatus | FeatureMTU)
	if err != nil {
		return err
	}
	n.status = feat&FeatureStatus != 0
	n.mtu = 1500
	var mac [6]byte
	link := true
	err = n.vd.ReadConfig(func(c pci.Registers) error {
		need := uint64(0)
		if feat&FeatureMAC != 0 {
			need = cfgMAC + 6
		}
		if feat&FeatureStatus != 0 {
			need = cfgStatus + 2
		}
		if feat&FeatureMTU != 0 {
			need = cfgMTU + 2
		}
		if c.Size() < need {
			return fmt.Errorf("virtio-net: %v: device configuration of %d bytes, need %d", n.vd.PCI, c.Size(), need)
		}
		if feat&FeatureMAC != 0 {
			for i := range mac {
				mac[i] = c.Read8(cfgMAC + uint64(i))
			}
		}
		if feat&FeatureStatus != 0 {
			link = c.Read16(cfgStatus)&statusLinkUp != 0
		}
		if feat&FeatureMTU != 0 {
			n.mtu = int(c.Read16(cfgMTU))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n.mtu < minMTU {
		return fmt.Errorf("virtio-net: %v: mtu %d is less than %d", n.vd.PCI, n.mtu, minMTU)
	}
	if feat&FeatureMAC == 0 {
		rand.Read(mac[:])
		mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	} else if mac[0]&1 != 0 {
		return fmt.Errorf("virtio-net: %v: MAC %v is a multicast address", n.vd.PCI, stdnet.HardwareAddr(mac[:]))
	}
	n.mac = stdnet.HardwareAddr(mac[:])
	n.link.Store(link)
	n.maxFrame = ethHeader + vlanTag + n.mtu

	qs, err := n.vd.SetupQueues([]int{cfg.QueueSize, cfg.QueueSize})
	if err != nil {
		return err
	}
	n.rxq, n.txq = qs[0], qs[1]

	n.rxBuf = (HeaderLen + n.maxFrame + 63) &^ 63
	nrx := n.rxq.Size()
	if m := cfg.RxMemory / n.rxBuf; m < nrx {
		nrx = max(m, 1)
	}
	n.txBuf = n.rxBuf
	ntx := n.txq.Size()
	if n.rxMem, err = n.mem.Alloc(nrx * n.rxBuf); err != nil {
		return fmt.Errorf("virtio-net: %v: receive buffers: %w", n.vd.PCI, err)
	}
	if n.txMem, err = n.mem.Alloc(ntx * n.txBuf); err != nil {
		return fmt.Errorf("virtio-net: %v: transmit buffers: %w", n.vd.PCI, err)
	}
	n.rxPosted = nrx
	n.rxTurn = make(chan struct{}, 1)
	n.txFree = make(chan int, ntx)
	for i := 0; i < ntx; i++ {
		n.txFree <- i
	}
	for i := 0; i < nrx; i++ {
		if err := n.postRx(i); err != nil {
			return err
		}
	}
	if err := n.vd.Start(); err != nil {
		return err
	}
	n.rxq.Kick() // notifications only after DRIVER_OK (3.1.1)
	n.wg.Add(2)
	go n.rxLoop()
	go n.txLoop()
	return nil
}

func (n *NIC) freeBuffers() {
	for _, r := range []**dma.Region{&n.rxMem, &n.txMem} {
		if *r != nil {
			n.mem.Free(*r)
			*r = nil
		}
	}
}

// postRx gives receive buffer i to the device.
func (n *NIC) postRx(i int) error {
	return n.rxq.Add(i, virtio.Buffer{Addr: n.rxMem.Phys + uint64(i*n.rxBuf), Len: uint32(n.rxBuf), Writable: true})
}

// fail takes the device down for good.
func (n *NIC) fail(cause error) {
	n.downOnce.Do(func() {
		n.downErr = cause
		close(n.down)
	})
}

// rxLoop watches the configuration: link status and
// DEVICE_NEEDS_RESET. Used receive buffers are Receive's own.
func (n *NIC) rxLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.down:
			return
		case <-n.vd.ConfigChanged():
		}
		if n.vd.NeedsReset() {
			n.vd.Fail()
			n.fail(fmt.Errorf("virtio-net: %v: the device set DEVICE_NEEDS_RESET", n.vd.PCI))
			return
		}
		if n.status {
			n.vd.ReadConfig(func(c pci.Registers) error {
				n.link.Store(c.Read16(cfgStatus)&statusLinkUp != 0)
				return nil
			})
		}
	}
}

// txLoop takes back transmit buffers the device is done with.
func (n *NIC) txLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.down:
			return
		case <-n.txq.Ready():
		}
		for {
			u, ok, err := n.txq.Next()
			if err != nil {
				n.vd.Fail()
				n.fail(err)
				return
			}
			if !ok {
				break
			}
			if u.Err != nil {
				n.txBad.Add(1)
			}
			n.txFree <- u.Token.(int)
		}
	}
}

// repost gives receive buffer i back and notifies the device when the
// receiver has caught up, or every quarter ring.
func (n *NIC) repost(i int) {
	n.rxMu.Lock()
	defer n.rxMu.Unlock()
	if err := n.postRx(i); err != nil {
		n.fail(err)
		return
	}
	n.rxSinceKick++
	if n.rxSinceKick >= n.rxPosted/4 || n.rxq.Pending() == 0 {
		n.rxSinceKick = 0
		n.rxq.Kick()
	}
}

func (n *NIC) downError() error {
	return fmt.Errorf("%w: %v", netdev.ErrDown, n.downErr)
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

// MAC implements netdev.NIC.
func (n *NIC) MAC() stdnet.HardwareAddr { return append(stdnet.HardwareAddr(nil), n.mac...) }

// MTU implements netdev.NIC.
func (n *NIC) MTU() int { return n.mtu }

// LinkUp reports VIRTIO_NET_S_LINK_UP (always true without
// VIRTIO_NET_F_STATUS).
func (n *NIC) LinkUp() bool { return n.link.Load() }

// Mode is how completions are noticed.
func (n *NIC) Mode() virtio.IntrMode { return n.vd.Mode() }

// PCI is the function the driver runs on.
func (n *NIC) PCI() *pci.Device { return n.vd.PCI }

// Stats returns the counters.
func (n *NIC) Stats() Stats {
	return Stats{RxFrames: n.rxN.Load(), RxDropped: n.rxDrop.Load(), RxBad: n.rxBad.Load(), TxFrames: n.txN.Load(), TxBad: n.txBad.Load()}
}

// Transmit implements netdev.NIC.
func (n *NIC) Transmit(ctx context.Context, frame []byte) error {
	if !n.enter() {
		return netdev.ErrDown
	}
	defer n.calls.Done()
	if len(frame) < ethHeader || len(frame) > n.maxFrame {
		return fmt.Errorf("virtio-net: %d-byte frame, want %d to %d", len(frame), ethHeader, n.maxFrame)
	}
	var i int
	select {
	case <-n.down:
		return n.downError()
	default:
	}
	select {
	case i = <-n.txFree:
	case <-n.down:
		return n.downError()
	case <-ctx.Done():
		return ctx.Err()
	}
	b := n.txMem.Bytes[i*n.txBuf:][:n.txBuf]
	clear(b[:HeaderLen])
	copy(b[HeaderLen:], frame)
	if err := n.txq.Add(i, virtio.Buffer{Addr: n.txMem.Phys + uint64(i*n.txBuf), Len: uint32(HeaderLen + len(frame))}); err != nil {
		n.txFree <- i
		n.fail(err)
		return n.downError()
	}
	n.txq.Kick()
	n.txN.Add(1)
	return nil
}

// RxBacklog implements netdev.BacklogNIC: the receive buffers the device
// has used and Receive not yet taken.
func (n *NIC) RxBacklog() int { return n.rxq.Pending() }

// Receive implements netdev.NIC. It takes used buffers from the
// receive queue itself, with the device's interrupts off while it finds
// them (as NAPI polls): an interrupt is asked for only when the queue is
// empty and Receive is about to sleep. Callers take turns.
func (n *NIC) Receive(ctx context.Context, buf []byte) (int, error) {
	if !n.enter() {
		return 0, netdev.ErrDown
	}
	defer n.calls.Done()
	select {
	case n.rxTurn <- struct{}{}:
	case <-n.down:
		return 0, n.downError()
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-n.rxTurn }()
	for {
		select {
		case <-n.down:
			return 0, n.downError()
		default:
		}
		u, ok, err := n.rxq.Next()
		if err == nil && !ok {
			// Going to sleep: interrupts on, then one more look, for a
			// buffer used before the device saw them on.
			n.rxInterrupts(true)
			if u, ok, err = n.rxq.Next(); err == nil && !ok {
				select {
				case <-n.rxq.Ready():
				case <-n.down:
					return 0, n.downError()
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				continue
			}
		}
		if err != nil {
			n.vd.Fail()
			n.fail(err)
			return 0, n.downError()
		}
		// Found one: the ring is polled until it is empty again.
		n.rxInterrupts(false)
		i := u.Token.(int)
		if u.Err != nil {
			n.rxBad.Add(1)
			n.repost(i)
			continue
		}
		frame, err := CheckRx(n.rxMem.Bytes[i*n.rxBuf:][:n.rxBuf], u.Len, n.maxFrame)
		if err != nil {
			n.rxBad.Add(1)
			n.repost(i)
			continue
		}
		if len(frame) > len(buf) {
			n.rxDrop.Add(1)
			n.repost(i)
			continue
		}
		k := copy(buf, frame)
		n.repost(i)
		n.rxN.Add(1)
		return k, nil
	}
}

// rxInterrupts turns receive interrupts on or off, touching the queue
// (and its lock) only when that changes, not for every frame. The caller
// holds rxTurn.
func (n *NIC) rxInterrupts(on bool) {
	if n.rxQuiet == !on {
		return
	}
	n.rxQuiet = !on
	n.rxq.SetInterrupts(on)
}

// Close implements netdev.NIC: calls in progress return netdev.ErrDown,
// the device is reset, and its memory and vectors are released (the
// buffers are kept if the device never finished its reset).
func (n *NIC) Close() error {
	n.enterMu.Lock()
	if n.closed {
		n.enterMu.Unlock()
		return netdev.ErrDown
	}
	n.closed = true
	n.enterMu.Unlock()
	n.fail(errors.New("closed"))
	n.calls.Wait()
	close(n.stop)
	n.wg.Wait()
	err := n.vd.Close()
	if err == nil {
		n.freeBuffers()
	}
	return err
}

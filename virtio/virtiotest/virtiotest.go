// Package virtiotest simulates a virtio 1.0 PCI device for host tests of
// drivers: a pcitest function with the modern capabilities, a common
// configuration that follows the initialization state machine (and
// records what a driver does wrong), split virtqueues read and written in
// dmatest memory as DMA would, MSI-X or ISR interrupts, and hooks to play
// a hostile device (bad used elements, refused features or vectors,
// resets that never finish, configuration that keeps changing).
package virtiotest

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/pci/pcitest"
	"github.com/unikgo/unikgo/virtio"
)

// CapSpec places one virtio_pci_cap.
type CapSpec struct {
	Type           uint8
	BAR            uint8
	Offset, Length uint32
	Multiplier     uint32 // notify only
	CapLen         uint8  // 0: the right length for the type
}

// Config describes a simulated device.
type Config struct {
	DeviceID  uint16 // PCI device ID, e.g. 0x1042
	Features  uint64 // offered feature bits
	NumQueues int
	QueueSize int // maximum per queue (default 256)
	// QueueSizes overrides QueueSize for the first queues (0: the queue
	// is not available).
	QueueSizes []int
	DevConfig  []byte // the device-specific configuration structure
	// MSIXVectors is the MSI-X table size; 0 leaves out MSI-X.
	MSIXVectors int
	// Caps overrides the default layout (common at BAR4+0, ISR at 0x1000,
	// device at 0x2000, notify at 0x3000 with multiplier 4).
	Caps []CapSpec
	// BAR4Size is the size of the structures' BAR (default 0x4000).
	BAR4Size uint64
}

// Default addresses.
const (
	BAR4Addr = 0xfe000000
	BAR1Addr = 0xfebf0000
)

// Device is a simulated virtio device.
type Device struct {
	Fn   *pcitest.Function
	Mem  *dmatest.Memory
	MSIX *pcitest.MSIXTable
	cfg  Config

	mu             sync.Mutex
	status         uint8
	devFeatSel     uint32
	drvFeatSel     uint32
	driverFeatures uint64
	msixConfig     uint16
	queueSel       uint16
	queues         []*Queue
	devcfg         []byte
	generation     uint8
	isr            uint8
	errs           []string
	resets         int
	resetReads     int // status reads left that still show the old status
	resetting      bool
	workers        sync.WaitGroup
	stop           chan struct{}

	// Hostile knobs, set before the driver runs.
	ResetDelay     int  // status reads that still show non-zero after a reset
	StuckReset     bool // the status never reads 0 after a reset
	RefuseFeatures bool // FEATURES_OK never sticks
	RefuseVectors  bool // every MSI-X vector reads back NO_VECTOR
	// RefuseQueueVectors: queue vectors (not the configuration's) read
	// back NO_VECTOR.
	RefuseQueueVectors bool
	UnstableConfig     bool // config_generation changes on every read
}

// New builds the device and plugs it into h at a.
func New(h *pcitest.Host, a pci.Addr, mem *dmatest.Memory, cfg Config) *Device {
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 256
	}
	if cfg.BAR4Size == 0 {
		cfg.BAR4Size = 0x4000
	}
	if cfg.Caps == nil {
		cfg.Caps = []CapSpec{
			{Type: virtio.CapCommonCfg, BAR: 4, Offset: 0, Length: 0x1000},
			{Type: virtio.CapISRCfg, BAR: 4, Offset: 0x1000, Length: 0x1000},
			{Type: virtio.CapDeviceCfg, BAR: 4, Offset: 0x2000, Length: 0x1000},
			{Type: virtio.CapNotifyCfg, BAR: 4, Offset: 0x3000, Length: 0x1000, Multiplier: 4},
		}
	}
	class := uint32(0x020000)
	if cfg.DeviceID == 0x1042 || cfg.DeviceID == 0x1001 {
		class = 0x010000
	}
	d := &Device{
		Fn:         pcitest.NewFunction(virtio.VendorID, cfg.DeviceID, class),
		Mem:        mem,
		cfg:        cfg,
		devcfg:     append([]byte(nil), cfg.DevConfig...),
		msixConfig: virtio.NoVector,
		stop:       make(chan struct{}),
	}
	d.resetQueuesLocked()
	mux := pcitest.NewMux(cfg.BAR4Size)
	var notifyMul uint32
	placed := map[uint8]bool{}
	for _, c := range cfg.Caps {
		body := make([]byte, 14)
		n := 16
		if c.Type == virtio.CapNotifyCfg {
			body = make([]byte, 18)
			n = 20
		}
		if c.CapLen != 0 {
			n = int(c.CapLen)
		}
		body[0] = uint8(n)
		body[1] = c.Type
		body[2] = c.BAR
		binary.LittleEndian.PutUint32(body[6:], c.Offset)
		binary.LittleEndian.PutUint32(body[10:], c.Length)
		if c.Type == virtio.CapNotifyCfg {
			binary.LittleEndian.PutUint32(body[14:], c.Multiplier)
		}
		d.Fn.AddCapability(pci.CapVendor, body, nil)
		if c.BAR != 4 || placed[c.Type] || uint64(c.Offset) >= cfg.BAR4Size {
			continue
		}
		placed[c.Type] = true
		length := uint64(c.Length)
		if length > cfg.BAR4Size-uint64(c.Offset) {
			length = cfg.BAR4Size - uint64(c.Offset)
		}
		switch c.Type {
		case virtio.CapCommonCfg:
			mux.Add(uint64(c.Offset), &common{d: d, size: length})
		case virtio.CapISRCfg:
			mux.Add(uint64(c.Offset), &isrRegs{d: d, size: length})
		case virtio.CapDeviceCfg:
			mux.Add(uint64(c.Offset), &devRegs{d: d, size: length})
		case virtio.CapNotifyCfg:
			notifyMul = c.Multiplier
			mux.Add(uint64(c.Offset), &notifyRegs{d: d, size: length, mul: notifyMul})
		}
	}
	d.Fn.SetBAR(4, pci.BARMemory64, BAR4Addr, cfg.BAR4Size, mux)
	if cfg.MSIXVectors > 0 {
		d.MSIX = d.Fn.AddMSIX(cfg.MSIXVectors, 1, 0)
		d.Fn.SetBAR(1, pci.BARMemory32, BAR1Addr, 0x1000, pcitest.NewMux(0x1000).Add(0, d.MSIX))
	}
	h.Add(a, d.Fn)
	return d
}

// errorf records a driver mistake.
func (d *Device) errorf(format string, args ...any) {
	d.errs = append(d.errs, fmt.Sprintf(format, args...))
}

// Locked runs f with the device locked, for changing the hostile knobs
// while a driver runs.
func (d *Device) Locked(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f()
}

// Errors returns the protocol violations the driver committed.
func (d *Device) Errors() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.errs...)
}

// Status is the device status as the driver last set it.
func (d *Device) Status() uint8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// Resets counts the driver's resets.
func (d *Device) Resets() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resets
}

// DriverFeatures is what the driver accepted.
func (d *Device) DriverFeatures() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.driverFeatures
}

// Queue returns queue i.
func (d *Device) Queue(i int) *Queue {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queues[i]
}

// Config returns a copy of the device configuration.
func (d *Device) Config() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.devcfg...)
}

// SetConfig changes device configuration bytes at off, bumps
// config_generation and sends a configuration change interrupt.
func (d *Device) SetConfig(off int, b []byte) {
	d.mu.Lock()
	copy(d.devcfg[off:], b)
	d.generation++
	vec := d.msixConfig
	if vec == virtio.NoVector || d.MSIX == nil || !d.MSIX.Enabled() {
		d.isr |= 2
		vec = virtio.NoVector
	}
	d.mu.Unlock()
	if vec != virtio.NoVector {
		d.MSIX.Raise(int(vec))
	}
}

// SetNeedsReset sets DEVICE_NEEDS_RESET and sends a configuration change
// interrupt.
func (d *Device) SetNeedsReset() {
	d.mu.Lock()
	d.status |= virtio.StatusNeedsReset
	d.mu.Unlock()
	d.SetConfig(0, nil)
}

func (d *Device) resetQueuesLocked() {
	d.queues = make([]*Queue, d.cfg.NumQueues)
	for i := range d.queues {
		n := uint16(d.cfg.QueueSize)
		if i < len(d.cfg.QueueSizes) {
			n = uint16(d.cfg.QueueSizes[i])
		}
		d.queues[i] = &Queue{d: d, index: i, max: n, size: n, vector: virtio.NoVector, kick: make(chan struct{}, 1)}
	}
}

// resetLocked is the device side of writing 0 to the status: workers
// stop (after the chain they are on), then queues go back to their initial
// state. Until then the status reads non-zero, as a device that is still
// quiescing shows it.
func (d *Device) resetLocked() {
	if d.resetting {
		return
	}
	d.resetting = true
	close(d.stop)
	go func() {
		d.workers.Wait()
		d.mu.Lock()
		defer d.mu.Unlock()
		d.finishResetLocked()
	}()
}

func (d *Device) finishResetLocked() {
	d.resetting = false
	d.stop = make(chan struct{})
	old := d.queues
	d.resetQueuesLocked()
	for i, q := range old {
		d.queues[i].handler, d.queues[i].workers = q.handler, q.workers
	}
	d.status = 0
	d.driverFeatures = 0
	d.devFeatSel, d.drvFeatSel, d.queueSel = 0, 0, 0
	d.msixConfig = virtio.NoVector
	d.isr = 0
	d.resets++
	d.resetReads = d.ResetDelay
}

// startWorkersLocked runs the handlers of enabled queues.
func (d *Device) startWorkersLocked() {
	for _, q := range d.queues {
		if q.handler != nil && q.enabled {
			for w := 0; w < q.workers; w++ {
				d.workers.Add(1)
				go q.work(d.stop)
			}
		}
	}
}

// dma returns n bytes at addr if the function may master the bus.
func (d *Device) dma(addr uint64, n int) ([]byte, error) {
	if d.Fn.Command()&pci.CmdBusMaster == 0 {
		return nil, fmt.Errorf("DMA at %#x with bus mastering off", addr)
	}
	return d.Mem.Slice(addr, n)
}

// raise signals queue q's vector, or sets the ISR queue bit.
func (d *Device) raise(vec uint16) {
	if vec != virtio.NoVector && d.MSIX != nil && d.MSIX.Enabled() {
		d.MSIX.Raise(int(vec))
		return
	}
	d.mu.Lock()
	d.isr |= 1
	d.mu.Unlock()
}

// common is the common configuration structure.
type common struct {
	d    *Device
	size uint64
}

func (c *common) Size() uint64                 { return c.size }
func (c *common) Read8(off uint64) uint8       { return uint8(c.read(off, 1)) }
func (c *common) Read16(off uint64) uint16     { return uint16(c.read(off, 2)) }
func (c *common) Read32(off uint64) uint32     { return c.read(off, 4) }
func (c *common) Write8(off uint64, v uint8)   { c.write(off, 1, uint32(v)) }
func (c *common) Write16(off uint64, v uint16) { c.write(off, 2, uint32(v)) }
func (c *common) Write32(off uint64, v uint32) { c.write(off, 4, v) }

func (c *common) read(off uint64, w int) uint32 {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	var q *Queue
	if int(d.queueSel) < len(d.queues) {
		q = d.queues[d.queueSel]
	}
	type fw struct {
		off uint64
		w   int
	}
	switch (fw{off, w}) {
	case fw{0x00, 4}:
		return d.devFeatSel
	case fw{0x04, 4}:
		switch d.devFeatSel {
		case 0:
			return uint32(d.cfg.Features)
		case 1:
			return uint32(d.cfg.Features >> 32)
		}
		return 0
	case fw{0x08, 4}:
		return d.drvFeatSel
	case fw{0x0c, 4}:
		switch d.drvFeatSel {
		case 0:
			return uint32(d.driverFeatures)
		case 1:
			return uint32(d.driverFeatures >> 32)
		}
		return 0
	case fw{0x10, 2}:
		return uint32(d.msixConfig)
	case fw{0x12, 2}:
		return uint32(len(d.queues))
	case fw{0x14, 1}:
		if d.StuckReset && d.resets > 0 {
			return 1
		}
		if d.resetting {
			return uint32(d.status | 1)
		}
		if d.resetReads > 0 {
			d.resetReads--
			return 1
		}
		return uint32(d.status)
	case fw{0x15, 1}:
		if d.UnstableConfig {
			d.generation++
		}
		return uint32(d.generation)
	case fw{0x16, 2}:
		return uint32(d.queueSel)
	}
	if off >= 0x18 && off < 0x38 {
		if q == nil {
			return 0
		}
		switch (fw{off, w}) {
		case fw{0x18, 2}:
			return uint32(q.size)
		case fw{0x1a, 2}:
			return uint32(q.vector)
		case fw{0x1c, 2}:
			if q.enabled {
				return 1
			}
			return 0
		case fw{0x1e, 2}:
			return uint32(q.index)
		case fw{0x20, 4}:
			return uint32(q.desc)
		case fw{0x24, 4}:
			return uint32(q.desc >> 32)
		case fw{0x28, 4}:
			return uint32(q.avail)
		case fw{0x2c, 4}:
			return uint32(q.avail >> 32)
		case fw{0x30, 4}:
			return uint32(q.used)
		case fw{0x34, 4}:
			return uint32(q.used >> 32)
		}
	}
	d.errorf("common config: %d-byte read at %#x", w, off)
	return 0
}

func (c *common) write(off uint64, w int, v uint32) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	var q *Queue
	if int(d.queueSel) < len(d.queues) {
		q = d.queues[d.queueSel]
	}
	type fw struct {
		off uint64
		w   int
	}
	switch (fw{off, w}) {
	case fw{0x00, 4}:
		d.devFeatSel = v
		return
	case fw{0x08, 4}:
		d.drvFeatSel = v
		return
	case fw{0x0c, 4}:
		if d.status&virtio.StatusFeaturesOK != 0 {
			d.errorf("driver features written after FEATURES_OK")
		}
		switch d.drvFeatSel {
		case 0:
			d.driverFeatures = d.driverFeatures&^0xffffffff | uint64(v)
		case 1:
			d.driverFeatures = d.driverFeatures&0xffffffff | uint64(v)<<32
		default:
			if v != 0 {
				d.errorf("driver features %#x in word %d", v, d.drvFeatSel)
			}
		}
		return
	case fw{0x10, 2}:
		d.msixConfig = d.vectorLocked(uint16(v))
		return
	case fw{0x14, 1}:
		d.setStatusLocked(uint8(v))
		return
	case fw{0x16, 2}:
		d.queueSel = uint16(v)
		return
	}
	if off >= 0x18 && off < 0x38 {
		if q == nil {
			d.errorf("write at %#x with queue_select %d of %d", off, d.queueSel, len(d.queues))
			return
		}
		if q.enabled && off != 0x1a {
			d.errorf("queue %d: write at %#x after queue_enable", q.index, off)
			return
		}
		if d.status&virtio.StatusDriverOK != 0 {
			d.errorf("queue %d: write at %#x after DRIVER_OK", q.index, off)
		}
		switch (fw{off, w}) {
		case fw{0x18, 2}:
			if v == 0 || v > uint32(q.max) || v&(v-1) != 0 {
				d.errorf("queue %d: size %d (max %d)", q.index, v, q.max)
				return
			}
			q.size = uint16(v)
			return
		case fw{0x1a, 2}:
			q.vector = d.vectorLocked(uint16(v))
			if d.RefuseQueueVectors {
				q.vector = virtio.NoVector
			}
			return
		case fw{0x1c, 2}:
			if v != 1 {
				d.errorf("queue %d: queue_enable %d", q.index, v)
				return
			}
			if err := q.checkRings(); err != nil {
				d.errorf("queue %d: enabled with %v", q.index, err)
				return
			}
			q.enabled = true
			return
		case fw{0x20, 4}:
			q.desc = q.desc&^0xffffffff | uint64(v)
			return
		case fw{0x24, 4}:
			q.desc = q.desc&0xffffffff | uint64(v)<<32
			return
		case fw{0x28, 4}:
			q.avail = q.avail&^0xffffffff | uint64(v)
			return
		case fw{0x2c, 4}:
			q.avail = q.avail&0xffffffff | uint64(v)<<32
			return
		case fw{0x30, 4}:
			q.used = q.used&^0xffffffff | uint64(v)
			return
		case fw{0x34, 4}:
			q.used = q.used&0xffffffff | uint64(v)<<32
			return
		}
	}
	d.errorf("common config: %d-byte write of %#x at %#x", w, v, off)
}

// vectorLocked is what a vector register keeps of a write.
func (d *Device) vectorLocked(v uint16) uint16 {
	if v == virtio.NoVector {
		return v
	}
	if d.RefuseVectors || d.MSIX == nil || int(v) >= d.cfg.MSIXVectors {
		return virtio.NoVector
	}
	return v
}

func (d *Device) setStatusLocked(v uint8) {
	if v == 0 {
		d.resetLocked()
		return
	}
	old := d.status
	if v&old != old&^virtio.StatusNeedsReset {
		d.errorf("status %#x clears bits of %#x", v, old)
	}
	if v&virtio.StatusFailed != 0 {
		d.status = v
		return
	}
	if v&virtio.StatusDriver != 0 && v&virtio.StatusAcknowledge == 0 {
		d.errorf("status %#x: DRIVER without ACKNOWLEDGE", v)
	}
	newBits := v &^ old
	if newBits&virtio.StatusFeaturesOK != 0 {
		if d.driverFeatures&^d.cfg.Features != 0 {
			d.errorf("driver accepted features %#x not offered (%#x)", d.driverFeatures&^d.cfg.Features, d.cfg.Features)
			v &^= virtio.StatusFeaturesOK
		}
		if d.driverFeatures&virtio.FeatureVersion1 == 0 {
			d.errorf("driver did not accept VERSION_1")
			v &^= virtio.StatusFeaturesOK
		}
		if d.RefuseFeatures {
			v &^= virtio.StatusFeaturesOK
		}
	}
	if newBits&virtio.StatusDriverOK != 0 {
		if v&virtio.StatusFeaturesOK == 0 {
			d.errorf("DRIVER_OK without FEATURES_OK")
		}
		d.status = v | old&virtio.StatusNeedsReset
		d.startWorkersLocked()
		return
	}
	d.status = v | old&virtio.StatusNeedsReset
}

// isrRegs is the ISR status: reading clears it.
type isrRegs struct {
	d    *Device
	size uint64
}

func (r *isrRegs) Size() uint64 { return r.size }
func (r *isrRegs) Read8(off uint64) uint8 {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if off != 0 {
		return 0
	}
	v := r.d.isr
	r.d.isr = 0
	return v
}
func (r *isrRegs) Read16(off uint64) uint16 { return uint16(r.Read8(off)) }
func (r *isrRegs) Read32(off uint64) uint32 { return uint32(r.Read8(off)) }
func (r *isrRegs) Write8(off uint64, v uint8) {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	r.d.errorf("write to the ISR status")
}
func (r *isrRegs) Write16(off uint64, v uint16) { r.Write8(off, 0) }
func (r *isrRegs) Write32(off uint64, v uint32) { r.Write8(off, 0) }

// devRegs is the device-specific configuration.
type devRegs struct {
	d    *Device
	size uint64
}

func (r *devRegs) Size() uint64 { return r.size }
func (r *devRegs) get(off uint64, w int) []byte {
	var b [4]byte
	if off < uint64(len(r.d.devcfg)) {
		copy(b[:w], r.d.devcfg[off:])
	}
	return b[:]
}
func (r *devRegs) Read8(off uint64) uint8 {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	return r.get(off, 1)[0]
}
func (r *devRegs) Read16(off uint64) uint16 {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	return binary.LittleEndian.Uint16(r.get(off, 2))
}
func (r *devRegs) Read32(off uint64) uint32 {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	return binary.LittleEndian.Uint32(r.get(off, 4))
}
func (r *devRegs) put(off uint64, b []byte) {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if off+uint64(len(b)) > uint64(len(r.d.devcfg)) {
		r.d.errorf("device config write at %#x past its %d bytes", off, len(r.d.devcfg))
		return
	}
	copy(r.d.devcfg[off:], b)
}
func (r *devRegs) Write8(off uint64, v uint8) { r.put(off, []byte{v}) }
func (r *devRegs) Write16(off uint64, v uint16) {
	r.put(off, binary.LittleEndian.AppendUint16(nil, v))
}
func (r *devRegs) Write32(off uint64, v uint32) {
	r.put(off, binary.LittleEndian.AppendUint32(nil, v))
}

// notifyRegs is the notification structure.
type notifyRegs struct {
	d    *Device
	size uint64
	mul  uint32
}

func (r *notifyRegs) Size() uint64 { return r.size }
func (r *notifyRegs) Read8(off uint64) uint8 {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	r.d.errorf("read of the notify structure at %#x", off)
	return 0
}
func (r *notifyRegs) Read16(off uint64) uint16 { return uint16(r.Read8(off)) }
func (r *notifyRegs) Read32(off uint64) uint32 { return uint32(r.Read8(off)) }
func (r *notifyRegs) Write8(off uint64, v uint8) {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	r.d.errorf("1-byte notify at %#x", off)
}
func (r *notifyRegs) Write32(off uint64, v uint32) {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	r.d.errorf("4-byte notify at %#x", off)
}
func (r *notifyRegs) Write16(off uint64, v uint16) {
	d := r.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if int(v) >= len(d.queues) {
		d.errorf("notify of queue %d of %d", v, len(d.queues))
		return
	}
	q := d.queues[v]
	if want := uint64(v) * uint64(r.mul); off != want {
		d.errorf("queue %d notified at %#x, want %#x", v, off, want)
	}
	if d.status&virtio.StatusDriverOK == 0 {
		d.errorf("queue %d notified before DRIVER_OK", v)
	}
	if !q.enabled {
		d.errorf("queue %d notified but not enabled", v)
		return
	}
	q.Notifies.Add(1)
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Queue is the device's side of one virtqueue.
type Queue struct {
	d       *Device
	index   int
	max     uint16
	size    uint16
	vector  uint16
	enabled bool

	desc, avail, used uint64
	lastAvail         uint16
	usedIdx           uint16
	noNotify          bool

	kick     chan struct{}
	handler  func(*Chain) uint32
	workers  int
	Notifies atomic.Int64
}

// Chain is one descriptor chain the device took from the available ring,
// its buffers resolved to the bytes they name.
type Chain struct {
	Head     uint16
	Readable [][]byte
	Writable [][]byte
}

// Bytes returns the readable buffers joined.
func (c *Chain) Bytes() []byte {
	var out []byte
	for _, b := range c.Readable {
		out = append(out, b...)
	}
	return out
}

// WritableLen is the total length of the writable buffers.
func (c *Chain) WritableLen() int {
	n := 0
	for _, b := range c.Writable {
		n += len(b)
	}
	return n
}

// Write copies p into the writable buffers from their start and returns
// how much fitted.
func (c *Chain) Write(p []byte) int {
	n := 0
	for _, b := range c.Writable {
		if len(p) == 0 {
			break
		}
		k := copy(b, p)
		p, n = p[k:], n+k
	}
	return n
}

func (q *Queue) checkRings() error {
	n := int(q.size)
	if q.desc%16 != 0 || q.avail%2 != 0 || q.used%4 != 0 {
		return fmt.Errorf("misaligned rings %#x %#x %#x", q.desc, q.avail, q.used)
	}
	if _, err := q.d.Mem.Slice(q.desc, 16*n); err != nil {
		return err
	}
	if _, err := q.d.Mem.Slice(q.avail, 6+2*n); err != nil {
		return err
	}
	if _, err := q.d.Mem.Slice(q.used, 6+8*n); err != nil {
		return err
	}
	return nil
}

// Size is the queue size the driver chose.
func (q *Queue) Size() int {
	q.d.mu.Lock()
	defer q.d.mu.Unlock()
	return int(q.size)
}

// Vector is the MSI-X vector the driver gave the queue.
func (q *Queue) Vector() uint16 {
	q.d.mu.Lock()
	defer q.d.mu.Unlock()
	return q.vector
}

// Enabled reports queue_enable.
func (q *Queue) Enabled() bool {
	q.d.mu.Lock()
	defer q.d.mu.Unlock()
	return q.enabled
}

// Serve has workers goroutines (at least 1) take chains as they become
// available, once the driver sets DRIVER_OK, and complete each with the
// length h returns. With more than one worker chains complete out of
// order. Call before the driver starts.
func (q *Queue) Serve(workers int, h func(*Chain) uint32) {
	q.d.mu.Lock()
	defer q.d.mu.Unlock()
	if workers < 1 {
		workers = 1
	}
	q.handler, q.workers = h, workers
}

func (q *Queue) work(stop chan struct{}) {
	defer q.d.workers.Done()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, ok, err := q.Pop()
			if err != nil || !ok {
				break
			}
			n := q.handler(c)
			q.Complete(c, n)
		}
		select {
		case <-stop:
			return
		case <-q.kick:
		case <-t.C:
		}
	}
}

func u32(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[0])) }

// Pop takes the next available chain, if the driver made one available
// and set DRIVER_OK. A malformed chain is recorded as a driver error,
// returned, and consumed.
func (q *Queue) Pop() (*Chain, bool, error) {
	d := q.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if !q.enabled || d.status&virtio.StatusDriverOK == 0 {
		return nil, false, nil
	}
	av, err := d.dma(q.avail, 6+2*int(q.size))
	if err != nil {
		d.errorf("queue %d: available ring: %v", q.index, err)
		return nil, false, err
	}
	idx := uint16(atomic.LoadUint32(u32(av)) >> 16)
	if idx == q.lastAvail {
		return nil, false, nil
	}
	if n := idx - q.lastAvail; n > q.size {
		err := fmt.Errorf("queue %d: avail idx %d is %d ahead", q.index, idx, n)
		d.errorf("%v", err)
		return nil, false, err
	}
	head := binary.LittleEndian.Uint16(av[4+2*int(q.lastAvail%q.size):])
	q.lastAvail++
	c, err := q.walk(head)
	if err != nil {
		d.errorf("queue %d: chain at %d: %v", q.index, head, err)
		q.completeLocked(head, 0)
		return nil, false, err
	}
	return c, true, nil
}

func (q *Queue) walk(head uint16) (*Chain, error) {
	desc, err := q.d.dma(q.desc, 16*int(q.size))
	if err != nil {
		return nil, err
	}
	c := &Chain{Head: head}
	i := head
	for n := 0; ; n++ {
		if n >= int(q.size) {
			return nil, fmt.Errorf("chain longer than the queue")
		}
		if i >= q.size {
			return nil, fmt.Errorf("descriptor %d of %d", i, q.size)
		}
		e := desc[16*int(i):]
		addr := binary.LittleEndian.Uint64(e)
		length := binary.LittleEndian.Uint32(e[8:])
		flags := binary.LittleEndian.Uint16(e[12:])
		if flags&^3 != 0 {
			return nil, fmt.Errorf("descriptor %d flags %#x", i, flags)
		}
		b, err := q.d.dma(addr, int(length))
		if err != nil {
			return nil, fmt.Errorf("descriptor %d: %v", i, err)
		}
		if flags&2 != 0 {
			c.Writable = append(c.Writable, b)
		} else {
			if len(c.Writable) > 0 {
				return nil, fmt.Errorf("readable descriptor %d after a writable one", i)
			}
			c.Readable = append(c.Readable, b)
		}
		if flags&1 == 0 {
			return c, nil
		}
		i = binary.LittleEndian.Uint16(e[14:])
	}
}

// Available is the number of chains the driver made available that the
// device has not taken.
func (q *Queue) Available() int {
	d := q.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if !q.enabled {
		return 0
	}
	av, err := d.Mem.Slice(q.avail, 6+2*int(q.size))
	if err != nil {
		return 0
	}
	return int(uint16(atomic.LoadUint32(u32(av))>>16) - q.lastAvail)
}

// WaitPop waits for a chain (polling every 100µs).
func (q *Queue) WaitPop(ctx context.Context) (*Chain, error) {
	for {
		c, ok, err := q.Pop()
		if err != nil {
			return nil, err
		}
		if ok {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.kick:
		case <-time.After(100 * time.Microsecond):
		}
	}
}

// Complete returns c to the driver with n bytes written and interrupts
// unless the driver asked for none (VIRTQ_AVAIL_F_NO_INTERRUPT), as QEMU
// does. It does nothing if the device was reset since c was popped.
func (q *Queue) Complete(c *Chain, n uint32) {
	q.push(uint32(c.Head), n, true)
}

// PushRaw puts an arbitrary used element (id, len) in the used ring and
// interrupts, as a hostile device might.
func (q *Queue) PushRaw(id, n uint32) {
	q.push(id, n, false)
}

func (q *Queue) push(id, n uint32, hint bool) {
	d := q.d
	d.mu.Lock()
	if d.queues[q.index] != q || !q.enabled {
		d.mu.Unlock()
		return
	}
	q.completeLocked16(id, n)
	raise := !hint || q.interruptsLocked()
	vec := q.vector
	d.mu.Unlock()
	if raise {
		d.raise(vec)
	}
}

// Interrupts reports whether the driver wants interrupts: the available
// ring's VIRTQ_AVAIL_F_NO_INTERRUPT is clear.
func (q *Queue) Interrupts() bool {
	q.d.mu.Lock()
	defer q.d.mu.Unlock()
	return q.interruptsLocked()
}

func (q *Queue) interruptsLocked() bool {
	av, err := q.d.dma(q.avail, 6+2*int(q.size))
	if err != nil {
		return true
	}
	// Read after the used index was published, as QEMU's
	// virtio_should_notify reads it after a full barrier.
	return atomic.LoadUint32(u32(av))&1 == 0
}

func (q *Queue) completeLocked(head uint16, n uint32) { q.completeLocked16(uint32(head), n) }

func (q *Queue) completeLocked16(id, n uint32) {
	used, err := q.d.dma(q.used, 6+8*int(q.size))
	if err != nil {
		q.d.errorf("queue %d: used ring: %v", q.index, err)
		return
	}
	e := used[4+8*int(q.usedIdx%q.size):]
	binary.LittleEndian.PutUint32(e, id)
	binary.LittleEndian.PutUint32(e[4:], n)
	q.usedIdx++
	q.publishLocked(used)
}

func (q *Queue) publishLocked(used []byte) {
	var flags uint32
	if q.noNotify {
		flags = 1
	}
	atomic.StoreUint32(u32(used), uint32(q.usedIdx)<<16|flags)
}

// SetUsedIdx moves the used index without writing elements, and
// interrupts, as a hostile device might.
func (q *Queue) SetUsedIdx(idx uint16) {
	d := q.d
	d.mu.Lock()
	used, err := d.dma(q.used, 6+8*int(q.size))
	if err != nil {
		d.mu.Unlock()
		return
	}
	q.usedIdx = idx
	q.publishLocked(used)
	vec := q.vector
	d.mu.Unlock()
	d.raise(vec)
}

// SetNoNotify sets or clears VIRTQ_USED_F_NO_NOTIFY.
func (q *Queue) SetNoNotify(on bool) {
	d := q.d
	d.mu.Lock()
	defer d.mu.Unlock()
	q.noNotify = on
	if used, err := d.dma(q.used, 6+8*int(q.size)); err == nil {
		q.publishLocked(used)
	}
}

package virtio

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/pci"
)

// PCI identification (4.1.2): vendor 0x1af4; modern device IDs are 0x1040
// plus the virtio device type; transitional IDs are 0x1000-0x103f with
// the type in the subsystem ID.
const (
	VendorID     = 0x1af4
	ModernIDBase = 0x1040

	TypeNet   = 1
	TypeBlock = 2

	TransitionalNet   = 0x1000
	TransitionalBlock = 0x1001
)

// Device status bits (2.1).
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 64
	StatusFailed      = 128
)

// Reserved feature bits (6).
const (
	FeatureIndirectDesc   = 1 << 28
	FeatureEventIdx       = 1 << 29
	FeatureVersion1       = 1 << 32
	FeatureAccessPlatform = 1 << 33
	FeatureRingPacked     = 1 << 34
)

// Common configuration layout (4.1.4.3, struct virtio_pci_common_cfg).
const (
	cfgDeviceFeatureSelect = 0x00
	cfgDeviceFeature       = 0x04
	cfgDriverFeatureSelect = 0x08
	cfgDriverFeature       = 0x0c
	cfgMSIXConfig          = 0x10
	cfgNumQueues           = 0x12
	cfgDeviceStatus        = 0x14
	cfgConfigGeneration    = 0x15
	cfgQueueSelect         = 0x16
	cfgQueueSize           = 0x18
	cfgQueueMSIXVector     = 0x1a
	cfgQueueEnable         = 0x1c
	cfgQueueNotifyOff      = 0x1e
	cfgQueueDesc           = 0x20
	cfgQueueDriver         = 0x28
	cfgQueueDevice         = 0x30
	commonCfgLen           = 0x38

	// NoVector is VIRTIO_MSI_NO_VECTOR.
	NoVector = 0xffff

	isrQueue  = 1
	isrConfig = 2
)

// Errors.
var (
	// ErrNoModern: the function lacks the modern capabilities (a legacy
	// or transitional device without them).
	ErrNoModern = errors.New("virtio: no virtio 1.0 PCI capabilities")
	// ErrNoVersion1: the device does not offer VIRTIO_F_VERSION_1.
	ErrNoVersion1 = errors.New("virtio: device does not offer VIRTIO_F_VERSION_1")
	// ErrFeatures: the device cleared FEATURES_OK.
	ErrFeatures = errors.New("virtio: device refused the negotiated features")
	// ErrResetTimeout: the status did not read back 0 after a reset.
	ErrResetTimeout = errors.New("virtio: device did not complete its reset")
	// ErrConfigUnstable: config_generation kept changing while reading.
	ErrConfigUnstable = errors.New("virtio: device configuration kept changing")
)

// Options are what a Device needs from the platform.
type Options struct {
	// Mem allocates the rings (and is what the drivers take buffers from).
	Mem dma.Allocator
	// Interrupts allocates MSI-X vectors; nil means poll.
	// pci.SystemInterrupt is the one in an image.
	Interrupts func() (pci.Interrupt, error)
	// PollInterval is how often used rings are checked when there are no
	// interrupts (default 200µs).
	PollInterval time.Duration
	// ResetTimeout bounds the wait for a reset to complete (default 1s).
	ResetTimeout time.Duration
}

// IntrMode is how a device's completions are noticed.
type IntrMode int

const (
	IntrPoll      IntrMode = iota // no interrupts: the used rings are polled
	IntrShared                    // one MSI-X vector for everything
	IntrDedicated                 // a vector for configuration and one per queue
)

func (m IntrMode) String() string {
	return [...]string{"poll", "shared MSI-X", "MSI-X per queue"}[m]
}

// Device is a virtio device on the PCI transport, from Open to Close.
type Device struct {
	PCI  *pci.Device
	opts Options

	common, notify, isr, devcfg pci.Registers
	notifyMul                   uint32

	offered, features uint64

	msix   *pci.MSIX
	lines  []pci.Interrupt
	mode   IntrMode
	queues []*Queue
	config chan struct{}

	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	started bool
	closed  bool
}

// Open finds the modern transport's structures, resets the device and sets
// ACKNOWLEDGE and DRIVER (3.1.1 steps 1-3).
func Open(ctx context.Context, p *pci.Device, opts Options) (*Device, error) {
	if opts.Mem == nil {
		return nil, errors.New("virtio: Options.Mem is nil")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 200 * time.Microsecond
	}
	if opts.ResetTimeout <= 0 {
		opts.ResetTimeout = time.Second
	}
	d := &Device{PCI: p, opts: opts, config: make(chan struct{}, 1), stop: make(chan struct{})}
	if err := d.findCaps(); err != nil {
		return nil, err
	}
	if err := d.reset(ctx); err != nil {
		return nil, err
	}
	d.setStatus(StatusAcknowledge)
	d.setStatus(StatusAcknowledge | StatusDriver)
	return d, nil
}

func (d *Device) findCaps() error {
	caps, err := d.PCI.FindCapabilities(pci.CapVendor)
	if err != nil {
		return fmt.Errorf("virtio: %v: %w", d.PCI, err)
	}
	type mapped struct {
		regs pci.Registers
		err  error
	}
	bars := map[uint8]mapped{}
	var problems []error
	for _, c := range caps {
		n := notifyCapLen
		if 256-int(c.Offset) < n {
			n = 256 - int(c.Offset)
		}
		b, err := d.PCI.CapabilityBytes(c, n)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		vc, err := ParseCap(b)
		if err != nil {
			problems = append(problems, fmt.Errorf("capability at %#x: %w", c.Offset, err))
			continue
		}
		var dst *pci.Registers
		min := uint64(1)
		switch vc.Type {
		case CapCommonCfg:
			dst, min = &d.common, commonCfgLen
		case CapNotifyCfg:
			dst, min = &d.notify, 2
		case CapISRCfg:
			dst = &d.isr
		case CapDeviceCfg:
			dst = &d.devcfg
		default:
			continue
		}
		if *dst != nil {
			continue // the first usable one of each type wins
		}
		if uint64(vc.Length) < min {
			problems = append(problems, fmt.Errorf("%w: type %d structure of %d bytes, need %d", ErrBadCap, vc.Type, vc.Length, min))
			continue
		}
		m, ok := bars[vc.BAR]
		if !ok {
			m.regs, _, m.err = d.PCI.Map(int(vc.BAR))
			bars[vc.BAR] = m
		}
		if m.err != nil {
			problems = append(problems, fmt.Errorf("type %d structure: %w", vc.Type, m.err))
			continue
		}
		w, err := pci.Slice(m.regs, uint64(vc.Offset), uint64(vc.Length))
		if err != nil {
			problems = append(problems, fmt.Errorf("%w: type %d structure in BAR%d: %v", ErrBadCap, vc.Type, vc.BAR, err))
			continue
		}
		*dst = w
		if vc.Type == CapNotifyCfg {
			d.notifyMul = vc.NotifyMultiplier
		}
	}
	if d.common == nil || d.notify == nil || d.isr == nil {
		return fmt.Errorf("%w: %v (common %v, notify %v, isr %v): %w", ErrNoModern, d.PCI, d.common != nil, d.notify != nil, d.isr != nil, errors.Join(problems...))
	}
	if d.devcfg == nil {
		d.devcfg = emptyRegs{}
	}
	return nil
}

// Status reads the device status.
func (d *Device) Status() uint8 { return d.common.Read8(cfgDeviceStatus) }

func (d *Device) setStatus(s uint8) { d.common.Write8(cfgDeviceStatus, s) }

// NeedsReset reports whether the device set DEVICE_NEEDS_RESET.
func (d *Device) NeedsReset() bool { return d.Status()&StatusNeedsReset != 0 }

// Fail sets FAILED: the driver gave up on the device.
func (d *Device) Fail() { d.setStatus(d.Status() | StatusFailed) }

// reset writes 0 to the status and waits for it to read 0 (4.1.4.3.2).
func (d *Device) reset(ctx context.Context) error {
	d.setStatus(0)
	deadline := time.Now().Add(d.opts.ResetTimeout)
	wait := time.Microsecond
	for d.Status() != 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %v", ErrResetTimeout, d.PCI)
		}
		if ctx != nil && ctx.Err() != nil {
			return fmt.Errorf("virtio: %v: waiting for reset: %w", d.PCI, ctx.Err())
		}
		time.Sleep(wait)
		if wait < time.Millisecond {
			wait *= 2
		}
	}
	return nil
}

// Offered reads the device's feature bits.
func (d *Device) Offered() uint64 {
	d.common.Write32(cfgDeviceFeatureSelect, 0)
	lo := d.common.Read32(cfgDeviceFeature)
	d.common.Write32(cfgDeviceFeatureSelect, 1)
	hi := d.common.Read32(cfgDeviceFeature)
	return uint64(hi)<<32 | uint64(lo)
}

// Negotiate accepts the bits of want the device offers, plus
// VIRTIO_F_VERSION_1 (required) and VIRTIO_F_ACCESS_PLATFORM (if
// offered), sets FEATURES_OK and checks the device kept it (3.1.1 steps
// 4-6). It returns the negotiated set.
func (d *Device) Negotiate(want uint64) (uint64, error) {
	d.offered = d.Offered()
	if d.offered&FeatureVersion1 == 0 {
		d.Fail()
		return 0, fmt.Errorf("%w: %v offers %#x", ErrNoVersion1, d.PCI, d.offered)
	}
	acc := d.offered & (want | FeatureVersion1 | FeatureAccessPlatform)
	d.common.Write32(cfgDriverFeatureSelect, 0)
	d.common.Write32(cfgDriverFeature, uint32(acc))
	d.common.Write32(cfgDriverFeatureSelect, 1)
	d.common.Write32(cfgDriverFeature, uint32(acc>>32))
	d.setStatus(StatusAcknowledge | StatusDriver | StatusFeaturesOK)
	if d.Status()&StatusFeaturesOK == 0 {
		d.Fail()
		return 0, fmt.Errorf("%w: %v, features %#x", ErrFeatures, d.PCI, acc)
	}
	d.features = acc
	return acc, nil
}

// Features is the negotiated feature set.
func (d *Device) Features() uint64 { return d.features }

// Mode is how completions are noticed (known after SetupQueues).
func (d *Device) Mode() IntrMode { return d.mode }

// ReadConfig calls read with the device-specific configuration structure
// (4.1.4.6) until config_generation reads the same before and after
// (2.3.1), at most 16 times. read must check cfg.Size() before each
// access: a device may provide a short structure (or none: Size 0).
func (d *Device) ReadConfig(read func(cfg pci.Registers) error) error {
	for i := 0; i < 16; i++ {
		g := d.common.Read8(cfgConfigGeneration)
		err := read(d.devcfg)
		if d.common.Read8(cfgConfigGeneration) == g {
			return err
		}
	}
	return fmt.Errorf("%w: %v", ErrConfigUnstable, d.PCI)
}

// ConfigChanged receives after a configuration change interrupt (or, when
// polling, after the ISR said so).
func (d *Device) ConfigChanged() <-chan struct{} { return d.config }

// NumQueues is num_queues, the most queues the device has.
func (d *Device) NumQueues() int { return int(d.common.Read16(cfgNumQueues)) }

// SetupQueues sets up queues 0 to len(sizes)-1, each with at most
// sizes[i] entries (rounded down to a power of two and to what the
// device allows), and their interrupts.
func (d *Device) SetupQueues(sizes []int) ([]*Queue, error) {
	if len(d.queues) != 0 {
		return nil, errors.New("virtio: queues already set up")
	}
	if n := d.NumQueues(); len(sizes) > n {
		return nil, fmt.Errorf("virtio: %v has %d queues, want %d", d.PCI, n, len(sizes))
	}
	d.setupInterrupts(len(sizes))
	for i, want := range sizes {
		q, err := d.setupQueue(uint16(i), want)
		if err != nil {
			d.freeQueues()
			d.closeLines()
			return nil, err
		}
		d.queues = append(d.queues, q)
	}
	return d.queues, nil
}

func (d *Device) setupQueue(i uint16, want int) (*Queue, error) {
	c := d.common
	c.Write16(cfgQueueSelect, i)
	max := int(c.Read16(cfgQueueSize))
	if max == 0 {
		return nil, fmt.Errorf("virtio: %v: queue %d is not available", d.PCI, i)
	}
	if c.Read16(cfgQueueEnable) != 0 {
		return nil, fmt.Errorf("virtio: %v: queue %d is enabled before setup", d.PCI, i)
	}
	n := want
	if n > max {
		n = max
	}
	if n > maxQueueSize {
		n = maxQueueSize
	}
	for n&(n-1) != 0 {
		n &= n - 1
	}
	if n < 1 {
		return nil, fmt.Errorf("virtio: %v: queue %d of %d entries", d.PCI, i, want)
	}
	off := uint64(c.Read16(cfgQueueNotifyOff)) * uint64(d.notifyMul)
	if off > d.notify.Size() || d.notify.Size()-off < 2 {
		return nil, fmt.Errorf("%w: %v: queue %d notifies at %#x, outside the %#x-byte notify structure", ErrBadCap, d.PCI, i, off, d.notify.Size())
	}
	q, err := newQueue(d, i, uint16(n), off)
	if err != nil {
		return nil, err
	}
	c.Write16(cfgQueueSize, uint16(n))
	write64(c, cfgQueueDesc, q.region.Phys+uint64(q.descOff))
	write64(c, cfgQueueDriver, q.region.Phys+uint64(q.availOff))
	write64(c, cfgQueueDevice, q.region.Phys+uint64(q.usedOff))
	if v := d.queueVector(int(i)); v != NoVector {
		c.Write16(cfgQueueMSIXVector, v)
		if c.Read16(cfgQueueMSIXVector) != v {
			// The device refused the vector: poll instead.
			d.toPolling(int(i))
		}
	}
	c.Write16(cfgQueueEnable, 1)
	return q, nil
}

func write64(r pci.Registers, off uint64, v uint64) {
	r.Write32(off, uint32(v))
	r.Write32(off+4, uint32(v>>32))
}

// setupInterrupts chooses the interrupt mode for nq queues, allocates and
// routes vectors and sets msix_config.
func (d *Device) setupInterrupts(nq int) {
	d.mode = IntrPoll
	if d.opts.Interrupts == nil {
		return
	}
	m, err := d.PCI.MSIX()
	if err != nil {
		return
	}
	d.msix = m
	want := nq + 1
	if m.Size() < want {
		want = 1
	}
	for len(d.lines) < want {
		l, err := d.opts.Interrupts()
		if err != nil {
			break
		}
		d.lines = append(d.lines, l)
	}
	switch {
	case len(d.lines) == nq+1:
		d.mode = IntrDedicated
	case len(d.lines) >= 1:
		d.mode = IntrShared
		for _, l := range d.lines[1:] {
			l.Close()
		}
		d.lines = d.lines[:1]
	default:
		return
	}
	for i, l := range d.lines {
		if err := m.Route(i, l); err != nil {
			d.toPolling(-1)
			return
		}
	}
	m.Enable()
	d.common.Write16(cfgMSIXConfig, 0)
	if d.common.Read16(cfgMSIXConfig) != 0 {
		d.toPolling(-1)
	}
}

// queueVector is the MSI-X entry for queue i in the current mode.
func (d *Device) queueVector(i int) uint16 {
	switch d.mode {
	case IntrDedicated:
		return uint16(i + 1)
	case IntrShared:
		return 0
	}
	return NoVector
}

// toPolling gives up on interrupts: every vector already written (config
// and queues up to last) is set back to NO_VECTOR, MSI-X is turned off
// and the lines are freed.
func (d *Device) toPolling(last int) {
	c := d.common
	c.Write16(cfgMSIXConfig, NoVector)
	for i := 0; i <= last; i++ {
		c.Write16(cfgQueueSelect, uint16(i))
		c.Write16(cfgQueueMSIXVector, NoVector)
	}
	if last >= 0 {
		c.Write16(cfgQueueSelect, uint16(last))
	}
	d.closeLines()
	d.mode = IntrPoll
}

func (d *Device) closeLines() {
	if d.msix != nil {
		d.msix.Disable()
	}
	for _, l := range d.lines {
		l.Close()
	}
	d.lines = nil
}

// Start sets DRIVER_OK (3.1.1 step 8) and starts delivering Ready and
// ConfigChanged wake-ups.
func (d *Device) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.started {
		return errors.New("virtio: Start on a closed or started device")
	}
	d.started = true
	switch d.mode {
	case IntrDedicated:
		d.goForward(d.lines[0].C(), d.config)
		for i, q := range d.queues {
			q.wake = d.lines[i+1].C()
		}
	case IntrShared:
		targets := []chan struct{}{d.config}
		for _, q := range d.queues {
			targets = append(targets, q.ready)
		}
		d.goForward(d.lines[0].C(), targets...)
	default:
		d.wg.Add(1)
		go d.poll()
	}
	d.setStatus(StatusAcknowledge | StatusDriver | StatusFeaturesOK | StatusDriverOK)
	if s := d.Status(); s&StatusDriverOK == 0 || s&StatusNeedsReset != 0 {
		return fmt.Errorf("virtio: %v: status %#x after DRIVER_OK", d.PCI, s)
	}
	return nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (d *Device) goForward(from <-chan struct{}, to ...chan struct{}) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			select {
			case <-d.stop:
				return
			case <-from:
				for _, c := range to {
					signal(c)
				}
			}
		}
	}()
}

// poll stands in for interrupts: it wakes each queue with used elements
// pending, and reads the ISR status (4.1.4.5) now and then for
// configuration changes.
func (d *Device) poll() {
	defer d.wg.Done()
	t := time.NewTicker(d.opts.PollInterval)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		for _, q := range d.queues {
			if q.Pending() > 0 {
				signal(q.ready)
			}
		}
		if n%64 == 0 && d.isr.Read8(0)&isrConfig != 0 {
			signal(d.config)
		}
	}
}

// Close resets the device, turns off its bus mastering and MSI-X, frees
// the vectors and, if the reset completed, the rings.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errors.New("virtio: device closed twice")
	}
	d.closed = true
	close(d.stop)
	d.mu.Unlock()
	d.wg.Wait()

	err := d.reset(context.Background())
	d.PCI.DisableBusMaster()
	d.closeLines()
	if err == nil {
		d.freeQueues()
	}
	return err
}

func (d *Device) freeQueues() {
	for _, q := range d.queues {
		q.free()
	}
	d.queues = nil
}

// emptyRegs is the device configuration of a device that has none.
type emptyRegs struct{}

func (emptyRegs) Size() uint64 { return 0 }
func (emptyRegs) Read8(off uint64) uint8 {
	panic(fmt.Sprintf("virtio: read of empty device configuration at %#x", off))
}
func (emptyRegs) Read16(off uint64) uint16 { return uint16(emptyRegs{}.Read8(off)) }
func (emptyRegs) Read32(off uint64) uint32 { return uint32(emptyRegs{}.Read8(off)) }
func (emptyRegs) Write8(off uint64, v uint8) {
	panic(fmt.Sprintf("virtio: write of empty device configuration at %#x", off))
}
func (emptyRegs) Write16(off uint64, v uint16) { emptyRegs{}.Write8(off, 0) }
func (emptyRegs) Write32(off uint64, v uint32) { emptyRegs{}.Write8(off, 0) }

// Find returns the functions that may be virtio devices of type typ:
// modern ones (device ID 0x1040+typ) and transitional ones (legacy ID with
// typ in the subsystem ID). Open refuses a transitional device that lacks
// the modern capabilities with ErrNoModern.
func Find(h pci.Host, typ int) []*pci.Device {
	var out []*pci.Device
	for _, d := range pci.Find(h, VendorID) {
		switch {
		case int(d.ID) == ModernIDBase+typ:
			out = append(out, d)
		case d.ID >= 0x1000 && d.ID < 0x1040 && int(d.Subsystem) == typ:
			out = append(out, d)
		}
	}
	return out
}

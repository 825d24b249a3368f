package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/dma"
)

// Split virtqueue layout (2.4).
const (
	descSize = 16

	descFNext  = 1
	descFWrite = 2

	availFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	usedFNoNotify     = 1 // VIRTQ_USED_F_NO_NOTIFY

	usedElemSize = 8
	maxQueueSize = 32768
)

var (
	// ErrBroken means the device wrote something impossible in a used
	// ring; the queue refuses further use and the device must be reset.
	ErrBroken = errors.New("virtio: device broke the virtqueue protocol")
	// ErrLength marks a used element whose length is more than its
	// chain's device-writable bytes.
	ErrLength = errors.New("virtio: used length larger than the buffers")
	// ErrFull means there are not enough free descriptors for a chain.
	ErrFull = errors.New("virtio: no free descriptors")
)

// Buffer is one descriptor of a chain: Len bytes of DMA memory at physical
// address Addr, which the device writes if Writable and reads otherwise.
type Buffer struct {
	Addr     uint64
	Len      uint32
	Writable bool
}

// Used is one completed chain taken from the used ring.
type Used struct {
	Token any    // what Add was given
	Len   uint32 // bytes the device says it wrote
	// Err is ErrLength (wrapped) if Len exceeds the chain's writable
	// bytes; the chain is recycled all the same.
	Err error
}

type chain struct {
	token    any
	ndesc    uint16
	writable uint64
	busy     bool
}

// Queue is one split virtqueue. Add, Kick and Next may be called from
// different goroutines.
type Queue struct {
	dev       *Device
	index     uint16
	size      uint16
	region    *dma.Region
	ring      []byte
	descOff   int
	availOff  int
	usedOff   int
	notifyOff uint64
	ready     chan struct{}   // signalled by the poller or a shared vector's forwarder
	wake      <-chan struct{} // what Ready returns: ready, or a dedicated vector's own channel

	mu       sync.Mutex
	next     []uint16 // the driver's own copy of descriptor links
	chains   []chain  // by head descriptor
	freeHead uint16
	numFree  int
	availIdx uint16
	flags    uint16 // the available ring's flags
	lastUsed uint16
	inflight int
	broken   error
}

// QueueLayout returns the offsets of the available and used rings and the
// total size of a split virtqueue of n entries laid out as this package
// does: descriptors at 0, the available ring after them, the used ring at
// the next 64-byte boundary.
func QueueLayout(n int) (availOff, usedOff, total int) {
	availOff = descSize * n
	usedOff = (availOff + 6 + 2*n + 63) &^ 63
	total = usedOff + 6 + usedElemSize*n
	return
}

func newQueue(d *Device, index, size uint16, notifyOff uint64) (*Queue, error) {
	availOff, usedOff, total := QueueLayout(int(size))
	r, err := d.opts.Mem.Alloc(total)
	if err != nil {
		return nil, fmt.Errorf("virtio: %v: queue %d of %d entries: %w", d.PCI, index, size, err)
	}
	q := &Queue{
		dev: d, index: index, size: size, region: r, ring: r.Bytes,
		availOff: availOff, usedOff: usedOff, notifyOff: notifyOff,
		ready: make(chan struct{}, 1),
	}
	q.wake = q.ready
	q.reinit()
	return q, nil
}

// reinit empties the queue: every descriptor free, indices at 0.
func (q *Queue) reinit() {
	clear(q.ring)
	q.next = make([]uint16, q.size)
	q.chains = make([]chain, q.size)
	for i := range q.next {
		q.next[i] = uint16(i + 1)
	}
	q.freeHead, q.numFree = 0, int(q.size)
	q.availIdx, q.lastUsed, q.inflight, q.flags = 0, 0, 0, 0
}

func (q *Queue) free() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.region != nil {
		q.dev.opts.Mem.Free(q.region)
		q.region, q.ring = nil, nil
	}
}

// Index is the queue's number; Size its number of descriptors.
func (q *Queue) Index() int { return int(q.index) }
func (q *Queue) Size() int  { return int(q.size) }

// Ready receives when the queue may have used elements (an interrupt, or
// the poller saw some). Wake-ups coalesce: drain with Next until it says
// there are none. The channel is fixed from Start on: with a vector of
// its own, the queue is woken by the vector directly, with no goroutine
// in between.
func (q *Queue) Ready() <-chan struct{} { return q.wake }

// SetInterrupts asks the device to interrupt when it uses a buffer (on)
// or not to (off), with VIRTQ_AVAIL_F_NO_INTERRUPT (2.7.7). Off is a
// hint the device may ignore. A driver that turns interrupts on before
// it sleeps must call Next once more afterwards: an element used before
// the device saw the flag cleared raised no interrupt.
func (q *Queue) SetInterrupts(on bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken != nil || q.ring == nil {
		return
	}
	f := q.flags &^ availFNoInterrupt
	if !on {
		f |= availFNoInterrupt
	}
	if f == q.flags {
		return
	}
	q.flags = f
	// A full barrier (XCHG), so the device's used index is read after it.
	atomic.StoreUint32(q.u32(q.availOff), uint32(q.availIdx)<<16|uint32(f))
}

// Pending is the number of used elements Next has not taken yet, as the
// device claims it (Next checks the claim).
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ring == nil || q.broken != nil {
		return 0
	}
	return int(uint16(atomic.LoadUint32(q.u32(q.usedOff))>>16) - q.lastUsed)
}

// Free is the number of free descriptors.
func (q *Queue) Free() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.numFree
}

// Outstanding is the number of chains the device has not returned.
func (q *Queue) Outstanding() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight
}

// Err is the error that broke the queue, or nil.
func (q *Queue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.broken
}

func (q *Queue) u32(off int) *uint32 {
	if off%4 != 0 {
		panic("virtio: misaligned ring index")
	}
	return (*uint32)(unsafe.Pointer(&q.ring[off]))
}

// Add makes bufs one descriptor chain and places it in the available ring
// (2.4.7.1, 2.4.7.2). Device-writable buffers must come after readable
// ones. token comes back in Used. The device sees the chain at once, but
// is not told until Kick.
func (q *Queue) Add(token any, bufs ...Buffer) error {
	if len(bufs) == 0 {
		return errors.New("virtio: empty descriptor chain")
	}
	var writable uint64
	for i, b := range bufs {
		if b.Len == 0 {
			return fmt.Errorf("virtio: zero-length buffer %d in a chain", i)
		}
		if i > 0 && bufs[i-1].Writable && !b.Writable {
			return errors.New("virtio: device-readable buffer after a device-writable one")
		}
		if b.Writable {
			writable += uint64(b.Len)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken != nil {
		return q.broken
	}
	if q.ring == nil {
		return errors.New("virtio: queue used after Close")
	}
	if len(bufs) > q.numFree {
		return fmt.Errorf("%w: %d wanted, %d free", ErrFull, len(bufs), q.numFree)
	}
	head := q.freeHead
	d := head
	for i, b := range bufs {
		e := q.ring[q.descOff+int(d)*descSize:][:descSize]
		binary.LittleEndian.PutUint64(e[0:], b.Addr)
		binary.LittleEndian.PutUint32(e[8:], b.Len)
		var flags uint16
		if b.Writable {
			flags |= descFWrite
		}
		nx := q.next[d]
		if i < len(bufs)-1 {
			flags |= descFNext
			binary.LittleEndian.PutUint16(e[14:], nx)
		} else {
			binary.LittleEndian.PutUint16(e[14:], 0)
			q.freeHead = nx
		}
		binary.LittleEndian.PutUint16(e[12:], flags)
		if i < len(bufs)-1 {
			d = nx
		}
	}
	q.numFree -= len(bufs)
	q.chains[head] = chain{token: token, ndesc: uint16(len(bufs)), writable: writable, busy: true}
	q.inflight++
	slot := q.availOff + 4 + 2*int(q.availIdx%q.size)
	binary.LittleEndian.PutUint16(q.ring[slot:], head)
	q.availIdx++
	// flags and idx in one store, after the descriptors and the slot.
	atomic.StoreUint32(q.u32(q.availOff), uint32(q.availIdx)<<16|uint32(q.flags))
	return nil
}

// Kick notifies the device of new chains (4.1.4.4) unless it asked not
// to be (VIRTQ_USED_F_NO_NOTIFY).
func (q *Queue) Kick() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken != nil || q.ring == nil {
		return
	}
	// The store publishing avail idx was a full barrier (XCHG), so this
	// load sees the device's flags after it.
	if uint16(atomic.LoadUint32(q.u32(q.usedOff)))&usedFNoNotify != 0 {
		return
	}
	q.dev.notify.Write16(q.notifyOff, q.index)
}

// Next takes the next used element (2.4.8). ok is false when there is
// none. A used index that claims more elements than chains outstanding,
// or an element whose id is not the head of an outstanding chain, breaks
// the queue: Next returns an error wrapping ErrBroken, now and on every
// later call.
func (q *Queue) Next() (u Used, ok bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken != nil {
		return Used{}, false, q.broken
	}
	if q.ring == nil {
		return Used{}, false, nil
	}
	idx := uint16(atomic.LoadUint32(q.u32(q.usedOff)) >> 16)
	n := idx - q.lastUsed
	if n == 0 {
		return Used{}, false, nil
	}
	if int(n) > q.inflight {
		return q.breakLocked("used index %d is %d past %d with %d chains outstanding", idx, n, q.lastUsed, q.inflight)
	}
	e := q.ring[q.usedOff+4+usedElemSize*int(q.lastUsed%q.size):][:usedElemSize]
	id := binary.LittleEndian.Uint32(e[0:])
	length := binary.LittleEndian.Uint32(e[4:])
	if id >= uint32(q.size) || !q.chains[id].busy {
		return q.breakLocked("used element %d names descriptor %d, not an outstanding chain", q.lastUsed, id)
	}
	c := q.chains[id]
	u = Used{Token: c.token, Len: length}
	if uint64(length) > c.writable {
		u.Err = fmt.Errorf("%w: queue %d, %d bytes used of %d", ErrLength, q.index, length, c.writable)
	}
	q.lastUsed++
	q.releaseLocked(uint16(id))
	return u, true, nil
}

// releaseLocked puts the chain at head back on the free list, following
// the driver's own links.
func (q *Queue) releaseLocked(head uint16) {
	c := q.chains[head]
	tail := head
	for i := uint16(1); i < c.ndesc; i++ {
		tail = q.next[tail]
	}
	q.next[tail] = q.freeHead
	q.freeHead = head
	q.numFree += int(c.ndesc)
	q.chains[head] = chain{}
	q.inflight--
}

func (q *Queue) breakLocked(format string, args ...any) (Used, bool, error) {
	q.broken = fmt.Errorf("%w: %v queue %d: %s", ErrBroken, q.dev.PCI, q.index, fmt.Sprintf(format, args...))
	return Used{}, false, q.broken
}

// Drain forgets every outstanding chain and returns their tokens, for a
// driver failing its requests after the device was reset. Only call it
// once the device can no longer touch the ring.
func (q *Queue) Drain() []any {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []any
	for _, c := range q.chains {
		if c.busy {
			out = append(out, c.token)
		}
	}
	if q.ring != nil {
		q.reinit()
	}
	return out
}

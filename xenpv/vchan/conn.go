package vchan

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one end of a vchan: a server (made by Listen) or a client (made by
// Dial). It is an io.ReadWriteCloser with libxenvchan's blocking semantics:
// Read waits for at least one byte and returns what is there, Write waits
// until all of p is in the ring, Send and Recv move whole messages.
//
// One Read (or Recv) and one Write (or Send) may run at the same time from
// different goroutines; Close may be called from any goroutine and wakes
// both.
type Conn struct {
	hdr *sharedHeader
	in  consumer
	out producer
	ev  EventChannel

	ownLive, peerLive statusByte // our live byte and the peer's
	askPeer           statusByte // where we ask the peer to notify us
	peerAsks          statusByte // where the peer asks us; cleared when we notify

	readMu, writeMu sync.Mutex   // one reader, one writer
	connectMu       sync.Mutex   // one WaitConnected
	life            sync.RWMutex // held shared while shared memory is touched; Close takes it exclusively to unmap
	wake            [sleepers]chan struct{}
	closing         chan struct{}
	closeOnce       sync.Once
	closeErr        error
	released        bool // under life
	failed          atomic.Pointer[error]
	peerGone        atomic.Bool
	release         func() error // platform teardown
	withdraw        func() error // server: withdraw the xenstore entries once a client is there
	withdrawOnce    sync.Once
	withdrawErr     error

	kickTimer [sleepers]*time.Timer
	kickMu    sync.Mutex
	kickCons  uint32 // the peer's consumer index when it last moved, as we saw it
	kicks     uint   // events re-sent since then

	// For Diag: events taken from the channel, events sent (asked for,
	// and re-sent), and the shared state as Close last saw it.
	eventsIn, notifies, kicksSent atomic.Uint64
	lastState                     atomic.Pointer[string]
}

var _ io.ReadWriteCloser = (*Conn)(nil)

// sleeper names one of the goroutines that may wait in a Conn at the same
// time: each kind is serialized by its own mutex.
type sleeper int

const (
	reader    sleeper = iota // Read, Recv
	writer                   // Write, Send
	connector                // WaitConnected
	sleepers
)

// broadcast passes an event-channel notification on to every sleeper: only
// one goroutine receives it from the channel, but a notification can
// concern both directions. Each sleeper has a one-slot wake channel, so a
// wake-up sent while it is still re-checking the ring is kept, not lost;
// at worst a sleeper wakes once for nothing.
func (c *Conn) broadcast() {
	for _, w := range c.wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// newConn wires an endpoint to an attached shared page. left and right are
// the ring data areas; the indices start from the shared values, which the
// caller has validated.
func newConn(hdr *sharedHeader, server bool, left, right ringData, ev EventChannel, release func() error) *Conn {
	c := &Conn{hdr: hdr, ev: ev, release: release, closing: make(chan struct{})}
	for i := range c.wake {
		c.wake[i] = make(chan struct{}, 1)
		c.kickTimer[i] = time.NewTimer(time.Hour)
		c.kickTimer[i].Stop()
	}
	leftIn := consumer{idx: &hdr.left, data: left, cons: hdr.left.cons.Load(), name: "left"}
	rightIn := consumer{idx: &hdr.right, data: right, cons: hdr.right.cons.Load(), name: "right"}
	leftOut := producer{idx: &hdr.left, data: left, prod: hdr.left.prod.Load(), name: "left"}
	rightOut := producer{idx: &hdr.right, data: right, prod: hdr.right.prod.Load(), name: "right"}
	if server {
		c.in, c.out = leftIn, rightOut
		c.ownLive, c.peerLive = srvLive, cliLive
		c.askPeer, c.peerAsks = cliNotify, srvNotify
	} else {
		c.in, c.out = rightIn, leftOut
		c.ownLive, c.peerLive = cliLive, srvLive
		c.askPeer, c.peerAsks = srvNotify, cliNotify
	}
	return c
}

// RingSizes returns the sizes in bytes of the ring this end reads from and
// the ring it writes to.
func (c *Conn) RingSizes() (read, write int) {
	return int(c.in.data.size), int(c.out.data.size)
}

// fail records the first protocol error; every later call returns it.
func (c *Conn) fail(err error) error {
	c.failed.CompareAndSwap(nil, &err)
	return *c.failed.Load()
}

// usable returns why the Conn cannot be used any more, or nil.
func (c *Conn) usable() error {
	if c.released {
		return ErrClosed
	}
	select {
	case <-c.closing:
		return ErrClosed
	default:
	}
	if e := c.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// peerState returns the peer's live byte, rejecting garbage.
func (c *Conn) peerState() (Live, error) {
	l := Live(c.hdr.load(c.peerLive))
	if l > LiveWaiting {
		return 0, c.fail(fmt.Errorf("vchan: peer's live byte is %d, want 0..2: %w", uint8(l), ErrProtocol))
	}
	return l, nil
}

// State returns the peer's state: LiveWaiting until a client attaches (seen
// from a server), LiveConnected, then LiveExited once the peer closed.
func (c *Conn) State() (Live, error) {
	c.life.RLock()
	defer c.life.RUnlock()
	if err := c.usable(); err != nil {
		return LiveExited, err
	}
	if c.peerGone.Load() {
		return LiveExited, ErrPeerGone
	}
	return c.peerState()
}

// notifyPeer sends an event if the peer asked for bit (and clears its
// request). The atomic and-fetch orders it after the index update.
func (c *Conn) notifyPeer(bit uint8) error {
	if c.hdr.clear(c.peerAsks, bit)&bit == 0 {
		return nil
	}
	c.notifies.Add(1)
	if err := c.ev.Notify(); err != nil {
		return fmt.Errorf("vchan: notify peer on port %d: %w", c.ev.Port(), err)
	}
	return nil
}

// Re-sent events: while bytes we wrote sit unread, a sleeper notifies the
// peer again after firstKick, then at doubling intervals up to
// firstKick<<maxKickShift, until the peer's consumer index moves.
const (
	firstKick    = 100 * time.Millisecond
	maxKickShift = 5 // 3.2 s
)

// kickDelay reports whether the peer has bytes of ours still to read and, if
// so, how long to sleep before notifying it again.
//
// A peer can lose the event for our data: Xen's vchan-socket-proxy in
// server mode takes one event for the client's arrival and then waits for
// another before it reads, so data written right after Dial, whose event
// coalesced with the arrival's, stays in the ring until the next event. The
// protocol has no acknowledgement to time out on; the unread bytes are the
// only sign, and an extra event is harmless to a correct peer.
func (c *Conn) kickDelay() (time.Duration, bool) {
	cons := c.out.idx.cons.Load()
	if c.out.idx.prod.Load() == cons {
		return 0, false
	}
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	if cons != c.kickCons {
		c.kickCons, c.kicks = cons, 0
	}
	return firstKick << min(c.kicks, maxKickShift), true
}

// kick notifies the peer whether or not it asked. A failure is not
// reported: the next requested notification meets it too, and reports it.
func (c *Conn) kick() {
	c.kickMu.Lock()
	c.kicks++
	c.kickMu.Unlock()
	c.kicksSent.Add(1)
	_ = c.ev.Notify()
}

// sleep waits for an event, a wake-up passed on by another sleeper, Close,
// or done. While the peer leaves our bytes unread, it re-sends our event
// now and then (see kickDelay).
func (c *Conn) sleep(who sleeper, done <-chan struct{}) error {
	var kick <-chan time.Time
	if d, ok := c.kickDelay(); ok {
		t := c.kickTimer[who]
		t.Reset(d)
		defer t.Stop()
		kick = t.C
	}
	select {
	case _, ok := <-c.ev.Events():
		if !ok {
			c.peerGone.Store(true)
		}
		c.eventsIn.Add(1)
		c.broadcast()
	case <-c.wake[who]:
	case <-kick:
		c.kick()
	case <-c.closing:
		return ErrClosed
	case <-done:
	}
	return nil
}

// tryRead copies up to len(p) bytes if at least atLeast are available
// (atLeast >= 1). It returns 0, nil when the caller should sleep.
func (c *Conn) tryRead(p []byte, atLeast uint32) (int, error) {
	if err := c.usable(); err != nil {
		return 0, err
	}
	ready, err := c.in.ready()
	if err != nil {
		return 0, c.fail(err)
	}
	if ready < atLeast {
		// Only now look at the peer: data it wrote before exiting must
		// still be read. Its live store comes after its index store, so
		// re-reading the index after seeing "exited" finds all of it.
		live, err := c.peerState()
		if err != nil {
			return 0, err
		}
		gone := c.peerGone.Load()
		if live != LiveExited && !gone {
			return 0, nil
		}
		if ready, err = c.in.ready(); err != nil {
			return 0, c.fail(err)
		}
		if ready < atLeast {
			switch {
			case ready > 0:
				return 0, io.ErrUnexpectedEOF
			case live == LiveExited:
				return 0, io.EOF
			default:
				return 0, ErrPeerGone
			}
		}
	}
	n := min(uint32(len(p)), ready)
	c.in.consume(p[:n])
	return int(n), c.notifyPeer(NotifyRead)
}

// tryWrite copies up to len(p) bytes if at least atLeast fit (atLeast >= 1).
// It returns 0, nil when the caller should sleep.
func (c *Conn) tryWrite(p []byte, atLeast uint32) (int, error) {
	if err := c.usable(); err != nil {
		return 0, err
	}
	live, err := c.peerState()
	if err != nil {
		return 0, err
	}
	if live == LiveExited {
		return 0, ErrPeerClosed
	}
	if c.peerGone.Load() {
		return 0, ErrPeerGone
	}
	space, err := c.out.space()
	if err != nil {
		return 0, c.fail(err)
	}
	if space < atLeast {
		return 0, nil
	}
	n := min(uint32(len(p)), space)
	wasRead := c.out.idx.prod.Load() == c.out.idx.cons.Load()
	c.out.produce(p[:n])
	if wasRead {
		// A sleeper that found nothing of ours unread armed no re-send
		// (kickDelay); woken, it looks again and arms one. Without this
		// a reader that went to sleep before another goroutine wrote
		// its request never re-sent it (a lab QubesDB sync waited out
		// its deadline so, the request unread).
		c.broadcast()
	}
	return int(n), c.notifyPeer(NotifyWrite)
}

// readAtLeast is the blocking loop behind Read and Recv.
func (c *Conn) readAtLeast(p []byte, atLeast uint32) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.life.RLock()
	defer c.life.RUnlock()
	for {
		if n, err := c.tryRead(p, atLeast); n > 0 || err != nil {
			return n, err
		}
		// Ask to be told about writes, then look once more: a write that
		// landed before our request was seen would otherwise never wake us.
		c.hdr.or(c.askPeer, NotifyWrite)
		if n, err := c.tryRead(p, atLeast); n > 0 || err != nil {
			return n, err
		}
		if err := c.sleep(reader, nil); err != nil {
			return 0, err
		}
	}
}

// writeAtLeast is the blocking loop behind Write and Send.
func (c *Conn) writeAtLeast(p []byte, atLeast uint32) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.life.RLock()
	defer c.life.RUnlock()
	done := 0
	for done < len(p) {
		n, err := c.tryWrite(p[done:], min(atLeast, uint32(len(p)-done)))
		done += n
		if err != nil {
			return done, err
		}
		if n > 0 {
			continue
		}
		c.hdr.or(c.askPeer, NotifyRead)
		n, err = c.tryWrite(p[done:], min(atLeast, uint32(len(p)-done)))
		done += n
		if err != nil {
			return done, err
		}
		if n > 0 {
			continue
		}
		if err := c.sleep(writer, nil); err != nil {
			return done, err
		}
	}
	return done, nil
}

// Read reads up to len(p) bytes, waiting until at least one is there. After
// the peer closed, Read returns what it wrote and then io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return c.readAtLeast(p, 1)
}

// Write writes all of p, waiting for ring space as often as needed
// (libxenvchan_write in blocking mode). It fails with ErrPeerClosed once
// the peer has exited; a server may write before its client attaches, up to
// the ring size.
func (c *Conn) Write(p []byte) (int, error) {
	return c.writeAtLeast(p, 1)
}

// Recv reads exactly len(p) bytes, waiting until all are in the ring, so a
// message is taken out whole (libxenvchan_recv). p must fit in the ring.
func (c *Conn) Recv(p []byte) error {
	if uint64(len(p)) > uint64(c.in.data.size) {
		return fmt.Errorf("vchan: Recv of %d bytes from a %d-byte ring: %w", len(p), c.in.data.size, ErrTooLarge)
	}
	if len(p) == 0 {
		return nil
	}
	_, err := c.readAtLeast(p, uint32(len(p)))
	return err
}

// Send writes p in one piece, waiting until the ring has room for all of it,
// so the peer never sees part of a message (libxenvchan_send). p must fit
// in the ring.
func (c *Conn) Send(p []byte) error {
	if uint64(len(p)) > uint64(c.out.data.size) {
		return fmt.Errorf("vchan: Send of %d bytes into a %d-byte ring: %w", len(p), c.out.data.size, ErrTooLarge)
	}
	if len(p) == 0 {
		return nil
	}
	_, err := c.writeAtLeast(p, uint32(len(p)))
	return err
}

// DataReady returns how many bytes a Read could take now without waiting.
func (c *Conn) DataReady() (int, error) {
	c.life.RLock()
	defer c.life.RUnlock()
	if err := c.usable(); err != nil {
		return 0, err
	}
	n, err := c.in.ready()
	if err != nil {
		return 0, c.fail(err)
	}
	return int(n), nil
}

// BufferSpace returns how many bytes a Write could place now without waiting.
func (c *Conn) BufferSpace() (int, error) {
	c.life.RLock()
	defer c.life.RUnlock()
	if err := c.usable(); err != nil {
		return 0, err
	}
	n, err := c.out.space()
	if err != nil {
		return 0, c.fail(err)
	}
	return int(n), nil
}

// WaitConnected waits until a client has attached to this server (or has
// already come and gone), and then withdraws the xenstore entries as Qubes'
// libvchan does, so nobody else tries the same page. On a client it returns
// at once.
func (c *Conn) WaitConnected(ctx context.Context) error {
	c.connectMu.Lock()
	defer c.connectMu.Unlock()
	c.life.RLock()
	defer c.life.RUnlock()
	for {
		if err := c.usable(); err != nil {
			return err
		}
		if c.peerGone.Load() {
			return ErrPeerGone
		}
		live, err := c.peerState()
		if err != nil {
			return err
		}
		if live != LiveWaiting {
			if c.withdraw != nil {
				c.withdrawOnce.Do(func() { c.withdrawErr = c.withdraw() })
			}
			return c.withdrawErr
		}
		// The client notifies after setting cli_live, so no request bit is
		// needed: the event latch holds that notification for us.
		if err := c.sleep(connector, ctx.Done()); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("vchan: waiting for the client: %w", err)
		}
	}
}

// Close marks this end exited, wakes the peer and any goroutine blocked in
// this Conn, waits for them to leave, and then releases the shared pages,
// the event channel and (on a server) the xenstore entries. Data still in
// the ring stays readable by the peer until it unmaps.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.life.Lock()
		defer c.life.Unlock()
		c.hdr.store(c.ownLive, uint8(LiveExited))
		st := c.sharedState()
		c.lastState.Store(&st)
		notifyErr := c.ev.Notify()
		c.released = true
		c.closeErr = c.release()
		if c.closeErr == nil && notifyErr != nil && !c.peerGone.Load() {
			c.closeErr = fmt.Errorf("vchan: notify peer of close on port %d: %w", c.ev.Port(), notifyErr)
		}
	})
	return c.closeErr
}

// Diag describes the Conn for a failure report: the indices of both rings
// and the status bytes (as Close last saw them once the pages are gone),
// and how many events it took from the peer and sent to it. A stalled
// exchange reads off it: bytes unread in a ring, and who was asked to
// notify whom.
func (c *Conn) Diag() string {
	var st string
	c.life.RLock()
	if c.released {
		st = *c.lastState.Load()
	} else {
		st = c.sharedState()
	}
	c.life.RUnlock()
	return fmt.Sprintf("%s; port %d: %d events in, %d notifications and %d re-sent events out",
		st, c.ev.Port(), c.eventsIn.Load(), c.notifies.Load(), c.kicksSent.Load())
}

// sharedState formats the shared page's indices and status bytes; the
// caller holds life.
func (c *Conn) sharedState() string {
	return fmt.Sprintf("in (%s) prod %d cons %d, out (%s) prod %d cons %d; live own %d peer %d; notify asked of peer %#x, by peer %#x",
		c.in.name, c.in.idx.prod.Load(), c.in.idx.cons.Load(), c.out.name, c.out.idx.prod.Load(), c.out.idx.cons.Load(),
		c.hdr.load(c.ownLive), c.hdr.load(c.peerLive), c.hdr.load(c.askPeer), c.hdr.load(c.peerAsks))
}

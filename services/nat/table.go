package nat

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"time"

	"github.com/unikgo/unikgo/services/packet"
)

// Verdict tells the caller what to do with a frame after Outbound/Inbound.
type Verdict uint8

const (
	// Drop: the frame was not translated (the error says why) and must not
	// be forwarded.
	Drop Verdict = iota
	// Forward: the frame was translated in place; forward it.
	Forward
	// Deny: the frame would open a new flow and Config.Admit refused it; the
	// frame is untouched and the caller may answer with an ICMP error.
	Deny
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "drop"
	case Forward:
		return "forward"
	case Deny:
		return "deny"
	}
	return "verdict(?)"
}

// Stats are cumulative counters plus the current flow count.
type Stats struct {
	Flows    int // flows in the table now
	MaxFlows int // the configured bound

	Created    uint64 // flows opened
	Expired    uint64 // flows removed after their idle timeout
	Evicted    uint64 // live flows removed to make room for new ones
	Flushed    uint64 // flows removed by FlushClient
	Translated uint64 // frames translated (both directions, including ICMP errors)
	Denied     uint64 // new flows refused by Config.Admit
	NoFlow     uint64 // frames that matched no flow
	NoPorts    uint64 // new flows refused because no outside port was free
	Dropped    uint64 // other drops (malformed, unsupported, fragments, wrong address)
}

// Flow storage is allocated in chunks of chunkSize flows, up to MaxFlows.
const (
	chunkShift = 10
	chunkSize  = 1 << chunkShift
	chunkMask  = chunkSize - 1

	nilIdx int32 = -1
)

// Eviction lists. Unassured flows (handshakes, closing TCP, one-way UDP and
// ICMP) are evicted before assured ones.
const (
	listNone uint8 = iota
	listUnassured
	listAssured
	numLists
)

// flow is one tracked connection. It stores only the inside tuple and the
// allocated outside port: the outside tuple is (remote, remote port,
// public address, outside port) and is derived from them. It holds no
// pointers, so the garbage collector never scans flow storage.
type flow struct {
	key      packet.Tuple // client's view: Src = client, Dst = remote
	pubPort  uint16       // outside port, or outside echo identifier
	state    state
	replied  bool  // a packet came back from the remote side
	list     uint8 // which eviction list holds the flow (listNone when free)
	deadline int64 // idle deadline, nanoseconds since the table's epoch

	prev, next              int32 // eviction list links (next doubles as the free-list link)
	insideNext, outsideNext int32 // next flow in the same inside-key / outside-key hash bucket
}

type lruList struct {
	head, tail int32 // head is the least recently used
	n          int
}

// Table is a bounded connection-tracking and NAT table. Create it with New.
type Table struct {
	cfg        Config
	pub4, pub6 packet.Addr

	chunks    [][]flow
	allocated int   // flow slots created so far, at most MaxFlows
	free      int32 // free-slot list through flow.next
	n         int

	inside  []int32 // hash buckets keyed by the inside tuple
	outside []int32 // hash buckets keyed by the outside tuple
	mask    uint64
	seed    [4]uint64

	lists [numLists]lruList

	epoch   time.Time
	started bool

	pkt   packet.Packet // scratch, reused for every frame
	stats Stats
}

// New validates cfg and returns an empty table. The hash buckets are
// allocated here; flow storage grows on demand in chunks of 1024 flows up to
// cfg.MaxFlows.
func New(cfg Config) (*Table, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Table{cfg: cfg, free: nilIdx}
	if cfg.PublicIPv4.IsValid() {
		t.pub4 = packet.AddrFromNetIP(cfg.PublicIPv4.Unmap())
	}
	if cfg.PublicIPv6.IsValid() {
		t.pub6 = packet.AddrFromNetIP(cfg.PublicIPv6)
	}
	buckets := 1 << bits.Len(uint(cfg.MaxFlows-1))
	if buckets < 16 {
		buckets = 16
	}
	t.inside = make([]int32, buckets)
	t.outside = make([]int32, buckets)
	for i := range t.inside {
		t.inside[i], t.outside[i] = nilIdx, nilIdx
	}
	t.mask = uint64(buckets - 1)
	for i := range t.seed {
		t.seed[i] = cfg.Rand.Uint64() | 1
	}
	t.chunks = make([][]flow, 0, (cfg.MaxFlows+chunkSize-1)/chunkSize)
	for l := range t.lists {
		t.lists[l] = lruList{head: nilIdx, tail: nilIdx}
	}
	t.stats.MaxFlows = cfg.MaxFlows
	return t, nil
}

// Len returns the number of flows in the table.
func (t *Table) Len() int { return t.n }

// Stats returns the counters.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Flows = t.n
	return s
}

// FlushClient removes every flow opened by client and returns how many. The
// FirewallVM calls it when the client's firewall rules change, so that
// connections the new rules forbid cannot continue.
func (t *Table) FlushClient(client netip.Addr) int {
	a := packet.AddrFromNetIP(client.Unmap())
	removed := 0
	for l := listUnassured; l < numLists; l++ {
		for i := t.lists[l].head; i != nilIdx; {
			f := t.flow(i)
			next := f.next
			if f.key.Src == a {
				t.remove(i)
				removed++
			}
			i = next
		}
	}
	t.stats.Flushed += uint64(removed)
	return removed
}

// Expire removes every flow idle past its timeout at now and returns how
// many. Translation already ignores expired flows and reclaims them lazily;
// calling Expire periodically just returns their slots sooner.
func (t *Table) Expire(now time.Time) int {
	ts := t.clock(now)
	removed := 0
	for l := listUnassured; l < numLists; l++ {
		for i := t.lists[l].head; i != nilIdx; {
			next := t.flow(i).next
			if t.flow(i).deadline <= ts {
				t.remove(i)
				removed++
			}
			i = next
		}
	}
	t.stats.Expired += uint64(removed)
	return removed
}

// clock converts now to nanoseconds since the first time the table saw.
func (t *Table) clock(now time.Time) int64 {
	if !t.started {
		t.epoch, t.started = now, true
	}
	return int64(now.Sub(t.epoch))
}

func (t *Table) flow(i int32) *flow { return &t.chunks[i>>chunkShift][i&chunkMask] }

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func addrWords(a *packet.Addr) (uint64, uint64) {
	return binary.LittleEndian.Uint64(a[:8]), binary.LittleEndian.Uint64(a[8:])
}

func (t *Table) hashInside(k *packet.Tuple) uint64 {
	s0, s1 := addrWords(&k.Src)
	d0, d1 := addrWords(&k.Dst)
	h := mix(s0^t.seed[0], s1^t.seed[1])
	h = mix(h^d0^t.seed[2], d1^t.seed[3])
	return mix(h^(uint64(k.SrcPort)|uint64(k.DstPort)<<16|uint64(k.Proto)<<32), t.seed[0]^t.seed[3])
}

func (t *Table) hashOutside(proto uint8, remote *packet.Addr, rport, pport uint16) uint64 {
	r0, r1 := addrWords(remote)
	h := mix(r0^t.seed[1], r1^t.seed[2])
	return mix(h^(uint64(rport)|uint64(pport)<<16|uint64(proto)<<32), t.seed[3]^t.seed[0])
}

func (t *Table) lookupInside(k *packet.Tuple) int32 {
	for i := t.inside[t.hashInside(k)&t.mask]; i != nilIdx; {
		f := t.flow(i)
		if f.key == *k {
			return i
		}
		i = f.insideNext
	}
	return nilIdx
}

func (t *Table) lookupOutside(proto uint8, remote *packet.Addr, rport, pport uint16) int32 {
	for i := t.outside[t.hashOutside(proto, remote, rport, pport)&t.mask]; i != nilIdx; {
		f := t.flow(i)
		if f.pubPort == pport && f.key.DstPort == rport && f.key.Proto == proto && f.key.Dst == *remote {
			return i
		}
		i = f.outsideNext
	}
	return nilIdx
}

// alloc takes a free slot, growing storage by one chunk if needed. The
// caller guarantees t.n < MaxFlows.
func (t *Table) alloc() int32 {
	if t.free == nilIdx {
		base := len(t.chunks) * chunkSize
		// The last chunk is cut to MaxFlows.
		c := make([]flow, min(chunkSize, t.cfg.MaxFlows-base))
		for j := len(c) - 1; j >= 0; j-- {
			c[j].next = t.free
			t.free = int32(base + j)
		}
		t.chunks = append(t.chunks, c)
		t.allocated += len(c)
	}
	i := t.free
	t.free = t.flow(i).next
	return i
}

// insert links a prepared flow into both hash chains and its list.
func (t *Table) insert(i int32) {
	f := t.flow(i)
	hi := t.hashInside(&f.key) & t.mask
	f.insideNext, t.inside[hi] = t.inside[hi], i
	ho := t.hashOutside(f.key.Proto, &f.key.Dst, f.key.DstPort, f.pubPort) & t.mask
	f.outsideNext, t.outside[ho] = t.outside[ho], i
	t.pushBack(f.list, i)
	t.n++
}

// remove unlinks flow i from both hash chains and its list and frees its
// slot.
func (t *Table) remove(i int32) {
	f := t.flow(i)
	for p := &t.inside[t.hashInside(&f.key)&t.mask]; *p != nilIdx; p = &t.flow(*p).insideNext {
		if *p == i {
			*p = f.insideNext
			break
		}
	}
	for p := &t.outside[t.hashOutside(f.key.Proto, &f.key.Dst, f.key.DstPort, f.pubPort)&t.mask]; *p != nilIdx; p = &t.flow(*p).outsideNext {
		if *p == i {
			*p = f.outsideNext
			break
		}
	}
	t.unlinkList(i)
	*f = flow{next: t.free}
	t.free = i
	t.n--
}

func (t *Table) pushBack(l uint8, i int32) {
	f := t.flow(i)
	L := &t.lists[l]
	f.list, f.prev, f.next = l, L.tail, nilIdx
	if L.tail != nilIdx {
		t.flow(L.tail).next = i
	} else {
		L.head = i
	}
	L.tail = i
	L.n++
}

func (t *Table) unlinkList(i int32) {
	f := t.flow(i)
	L := &t.lists[f.list]
	if f.prev != nilIdx {
		t.flow(f.prev).next = f.next
	} else {
		L.head = f.next
	}
	if f.next != nilIdx {
		t.flow(f.next).prev = f.prev
	} else {
		L.tail = f.prev
	}
	L.n--
	f.list, f.prev, f.next = listNone, nilIdx, nilIdx
}

// touch moves flow i to the most recently used end of the list its state
// belongs on.
func (t *Table) touch(i int32) {
	f := t.flow(i)
	want := f.listFor()
	if f.list == want && t.lists[want].tail == i {
		return
	}
	t.unlinkList(i)
	t.pushBack(want, i)
}

// expired reports whether flow i is past its deadline at now.
func (t *Table) expired(i int32, now int64) bool { return t.flow(i).deadline <= now }

// makeRoom frees one slot in a full table: an expired assured flow at the
// head of its list, else the least recently used unassured flow, else the
// least recently used assured flow.
func (t *Table) makeRoom(now int64) {
	victim := t.lists[listAssured].head
	if victim == nilIdx || !t.expired(victim, now) {
		if u := t.lists[listUnassured].head; u != nilIdx {
			victim = u
		}
	}
	if t.expired(victim, now) {
		t.stats.Expired++
	} else {
		t.stats.Evicted++
	}
	t.remove(victim)
}

// reap removes expired flows found at the heads of the lists, a bounded
// amount of cleanup done whenever a flow is created.
func (t *Table) reap(now int64) {
	for l := listUnassured; l < numLists; l++ {
		for k := 0; k < 2; k++ {
			h := t.lists[l].head
			if h == nilIdx || !t.expired(h, now) {
				break
			}
			t.remove(h)
			t.stats.Expired++
		}
	}
}

// allocPort picks a free outside port for a flow to (proto, remote, rport),
// probing sequentially from a random start. An expired flow holding a
// candidate port is removed and its port reused.
func (t *Table) allocPort(proto uint8, remote *packet.Addr, rport uint16, now int64) (uint16, bool) {
	lo, span := uint32(t.cfg.PortMin), uint32(t.cfg.PortMax)-uint32(t.cfg.PortMin)+1
	start := uint32(t.cfg.Rand.Uint64() % uint64(span))
	for k := uint32(0); k < min(span, MaxPortProbes); k++ {
		p := uint16(lo + (start+k)%span)
		i := t.lookupOutside(proto, remote, rport, p)
		if i == nilIdx {
			return p, true
		}
		if t.expired(i, now) {
			t.remove(i)
			t.stats.Expired++
			return p, true
		}
	}
	return 0, false
}

// create opens a flow for the inside tuple k at now, in the state the
// first packet (with TCP flags) implies.
func (t *Table) create(k *packet.Tuple, tcpFlags uint8, now int64) (int32, error) {
	t.reap(now)
	port, ok := t.allocPort(k.Proto, &k.Dst, k.DstPort, now)
	if !ok {
		t.stats.NoPorts++
		return nilIdx, ErrPortsExhausted
	}
	if t.n >= t.cfg.MaxFlows {
		t.makeRoom(now)
	}
	i := t.alloc()
	f := t.flow(i)
	*f = flow{key: *k, pubPort: port, state: initialState(k.Proto, tcpFlags)}
	f.list = f.listFor()
	t.insert(i)
	t.stats.Created++
	return i, nil
}

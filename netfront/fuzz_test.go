package netfront

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/xenpv/ring"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

// fuzzNIC is a NIC with a connection but no xenstore or backend: the
// fuzzers write the backend's side of its rings directly.
type fuzzNIC struct {
	n      *NIC
	c      *conn
	grants *fakeGrants
	mem    *dmatest.Memory
}

func newFuzzNIC(t testing.TB, rxBufs, txBufs int, sg bool) *fuzzNIC {
	mem := dmatest.New(16 << 20)
	g := newFakeGrants()
	n := &NIC{
		cfg:      Config{Grants: g, Memory: mem, Device: vifID, RxBuffers: rxBufs, TxBuffers: txBufs},
		fe:       &xenbus.Frontend{BackendID: backDom},
		mtu:      9000,
		maxFrame: EthHeader + VLANTag + 9000,
		down:     make(chan struct{}),
		txWake:   make(chan struct{}),
		rxReady:  make(chan rxPacket, rxBufs),
		rxState:  make([]uint8, rxBufs),
		tx:       make([]txSlot, txBufs),
	}
	var err error
	if n.rxPages, err = allocPages(mem, rxBufs); err != nil {
		t.Fatal(err)
	}
	if n.txPages, err = allocPages(mem, txBufs); err != nil {
		t.Fatal(err)
	}
	for i := rxBufs - 1; i >= 0; i-- {
		n.rxFree = append(n.rxFree, uint16(i))
	}
	for i := txBufs - 1; i >= 0; i-- {
		n.txFree = append(n.txFree, uint16(i))
	}
	n.cfg.Events = newFakeEvents()
	c, err := n.newConn(sg)
	if err != nil {
		t.Fatal(err)
	}
	n.conn = c
	n.mu.Lock()
	n.refillLocked(c)
	n.mu.Unlock()
	return &fuzzNIC{n: n, c: c, grants: g, mem: mem}
}

// rxRing and txRing are the backend's view of the rings' memory.
func (f *fuzzNIC) ringMem(off int) []byte { return f.c.region.Bytes[off : off+PageSize] }

// checkRx checks the receive side's bookkeeping and every queued frame.
func (f *fuzzNIC) checkRx(t *testing.T) {
	n := f.n
	count := map[uint8]int{}
	for _, s := range n.rxState {
		count[s]++
	}
	if count[rxFree] != len(n.rxFree) || count[rxQuarantined] != len(n.rxQuar) {
		t.Fatalf("rx states %v, %d free listed, %d quarantined", count, len(n.rxFree), len(n.rxQuar))
	}
	if n.failed == nil && count[rxPosted] != f.c.rx.Outstanding() {
		t.Fatalf("%d pages posted, %d requests outstanding", count[rxPosted], f.c.rx.Outstanding())
	}
	held := 0
	seen := map[uint16]bool{}
	for range len(n.rxReady) {
		p := <-n.rxReady
		sum := 0
		for _, s := range p.seg[:p.n] {
			if int(s.off)+int(s.len) > PageSize || s.len == 0 {
				t.Fatalf("frame segment of %d bytes at %d", s.len, s.off)
			}
			if n.rxState[s.buf] != rxReady || seen[s.buf] {
				t.Fatalf("frame segment in page %d (state %d, seen %v)", s.buf, n.rxState[s.buf], seen[s.buf])
			}
			seen[s.buf] = true
			sum += int(s.len)
		}
		limit := n.maxFrame
		if p.meta.GSOType != netdev.GSONone {
			limit = MaxRxGSOFrame
		}
		if sum != p.length || p.length < EthHeader || p.length > limit || p.n > SlotsMin {
			t.Fatalf("queued frame of %d bytes in %d segments summing to %d (meta %+v)", p.length, p.n, sum, p.meta)
		}
		switch {
		case !f.c.offload && p.meta != (netdev.Meta{}):
			t.Fatalf("offload off, frame with meta %+v", p.meta)
		case (p.meta.GSOType == netdev.GSONone) != (p.meta.GSOSize == 0):
			t.Fatalf("frame with meta %+v", p.meta)
		case p.meta.GSOType > netdev.GSOTCPv6:
			t.Fatalf("frame with meta %+v", p.meta)
		}
		held += p.n
		n.rxReady <- p
	}
	if held != count[rxReady] {
		t.Fatalf("%d pages ready, %d held by queued frames", count[rxReady], held)
	}
}

// rxFuzzInput lays out a fuzzer input: rsp_prod, a mask of slots whose id
// is fixed to the right one (so the fuzzer reaches deeper checks), a mask
// of grants the backend keeps mapped, then 8-byte response slots.
func rxFuzzInput(prod uint32, fixIDs, keep uint32, rsps ...[RxResponseSize]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, prod)
	b = binary.LittleEndian.AppendUint32(b, fixIDs)
	b = binary.LittleEndian.AppendUint32(b, keep)
	for _, r := range rsps {
		b = append(b, r[:]...)
	}
	return b
}

// FuzzRxResponses writes arbitrary responses and producer index into the
// rx ring of a NIC with 32 buffers posted, and drains it: nothing panics,
// an impossible producer takes the NIC down, every page stays accounted
// for, every queued frame is within bounds, and only the start of an
// unfinished packet is left unconsumed.
func FuzzRxResponses(f *testing.F) {
	all := uint32(0xffffffff)
	f.Add(rxFuzzInput(1, all, 0, slot(RxResponse{Status: 60})))
	f.Add(rxFuzzInput(3, all, 0, slot(RxResponse{Flags: RxMoreData, Status: 4096}), slot(RxResponse{Offset: 10, Flags: RxMoreData, Status: 100}), slot(RxResponse{Status: 14})))
	f.Add(rxFuzzInput(2, all, 0, slot(RxResponse{Flags: RxMoreData, Status: 100}), slot(RxResponse{Flags: RxMoreData, Status: 100})))
	f.Add(rxFuzzInput(3, 1, 0, slot(RxResponse{Flags: RxExtraInfo | RxMoreData, Status: 60}), extraSlot(Extra{Type: ExtraGSO, Flags: ExtraFlagMore}), extraSlot(Extra{Type: ExtraHash})))
	f.Add(rxFuzzInput(2, all, 0, slot(RxResponse{Status: -1}), slot(RxResponse{Offset: 4090, Status: 7})))
	f.Add(rxFuzzInput(2, all, 2, slot(RxResponse{Status: 60}), slot(RxResponse{Flags: RxCsumBlank, Status: 60})))
	f.Add(rxFuzzInput(33, all, 0))
	f.Add(rxFuzzInput(0xfffffff0, 0, 0))
	// Offload: a GSO packet (extra, then 17 more data slots), csum flags,
	// a zero GSO size, a bad GSO type, two GSO extras, csum_blank past
	// the first slot.
	gso := []([RxResponseSize]byte){slot(RxResponse{Flags: RxExtraInfo | RxMoreData | RxCsumBlank | RxDataValidated, Status: 4096}),
		extraSlot(Extra{Type: ExtraGSO, GSOSize: 1448, GSOType: GSOTypeTCPv4})}
	for i := range 16 {
		fl := uint16(RxMoreData)
		if i == 15 {
			fl = 0
		}
		gso = append(gso, slot(RxResponse{Flags: fl, Status: 4096}))
	}
	f.Add(rxFuzzInput(18, ^uint32(2), 0, gso...))
	f.Add(rxFuzzInput(2, 1, 0, slot(RxResponse{Flags: RxExtraInfo | RxCsumBlank, Status: 60}), extraSlot(Extra{Type: ExtraGSO, GSOType: GSOTypeTCPv6})))
	f.Add(rxFuzzInput(2, 1, 0, slot(RxResponse{Flags: RxExtraInfo, Status: 60}), extraSlot(Extra{Type: ExtraGSO, GSOSize: 1, GSOType: 3})))
	f.Add(rxFuzzInput(3, 1, 0, slot(RxResponse{Flags: RxExtraInfo, Status: 60}), extraSlot(Extra{Type: ExtraGSO, Flags: ExtraFlagMore, GSOSize: 1, GSOType: 1}), extraSlot(Extra{Type: ExtraGSO, GSOSize: 1, GSOType: 1})))
	f.Add(rxFuzzInput(2, all, 0, slot(RxResponse{Flags: RxMoreData, Status: 60}), slot(RxResponse{Flags: RxCsumBlank, Status: 60})))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, offload := range []bool{false, true} {
			fuzzRx(t, in, offload)
		}
	})
}

// fuzzRx is one run of FuzzRxResponses, with offloads negotiated or not.
func fuzzRx(t *testing.T, in []byte, offload bool) {
	{
		if len(in) < 12 {
			return
		}
		fz := newFuzzNIC(t, 32, 1, true)
		n, c := fz.n, fz.c
		c.offload = offload
		prod := binary.LittleEndian.Uint32(in)
		fix := binary.LittleEndian.Uint32(in[4:])
		keep := binary.LittleEndian.Uint32(in[8:])
		slots := in[12:]
		page := fz.ringMem(PageSize)
		for i := 0; i < 32 && i*RxResponseSize < len(slots); i++ {
			s := page[ring.HeaderSize+i*RxResponseSize:][:RxResponseSize]
			copy(s, slots[i*RxResponseSize:])
			if fix&(1<<i) != 0 {
				binary.LittleEndian.PutUint16(s, uint16(i))
			}
		}
		for i := range 32 {
			if keep&(1<<i) != 0 {
				fz.grants.mapRef(backDom, c.rxPosted[i].ref, true)
			}
		}
		c.rx.Shared().Store(ring.RspProd, prod)
		n.mu.Lock()
		defer n.mu.Unlock()
		n.serviceLocked(c)
		if prod > 32 {
			if !errors.Is(n.failed, ErrBackendBroken) {
				t.Fatalf("rsp_prod %d with 32 requests accepted", prod)
			}
			return
		}
		if n.failed != nil {
			t.Fatalf("NIC failed: %v", n.failed)
		}
		if left := prod - c.rx.ConsumedIndex(); left >= maxRxSlots {
			t.Fatalf("%d responses left unconsumed", left)
		}
		fz.checkRx(t)
		// The quarantine ends when the backend lets go.
		for i := range 32 {
			if keep&(1<<i) != 0 {
				fz.grants.unmapRef(c.rxPosted[i].ref)
			}
		}
		n.retryQuarantineLocked()
		if len(n.rxQuar) != 0 {
			t.Fatalf("%d pages still quarantined", len(n.rxQuar))
		}
		fz.checkRx(t)
	}
}

// FuzzTxResponses writes arbitrary responses and producer index into the
// tx ring under frames in flight, and drains it: nothing panics, an
// impossible producer takes the NIC down, a page is freed only by a
// response naming it (or once the ring is empty), never twice, and no
// page is freed while the backend maps it.
func FuzzTxResponses(f *testing.F) {
	resp := func(id uint16, st Status) []byte {
		b := make([]byte, TxResponseSize)
		r := TxResponse{ID: id, Status: st}
		r.Put(b)
		return b
	}
	cat := func(prod uint32, keep uint8, rs ...[]byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, prod)
		b = append(b, keep)
		for _, r := range rs {
			b = append(b, r...)
		}
		return b
	}
	// Frames in flight: 60 bytes in slot 0 (ring index 0), a 5000-byte
	// GSO frame in slots 1-2 (ring indexes 1, 3; its extra info at 2),
	// 60 in slot 3 (ring index 4); ids 0x100, 0x101, 0x102, 0x103.
	f.Add(cat(5, 0, resp(0x100, 0), resp(0x101, 0), resp(0, StatusNull), resp(0x102, 0), resp(0x103, 0)))
	f.Add(cat(2, 0, resp(0x103, -1), resp(0x200, 0)))
	f.Add(cat(5, 1, resp(0x100, 0), resp(0x100, 0), resp(0x1ff, 1), resp(7, 3), resp(0, StatusNull)))
	f.Add(cat(5, 0, resp(0, StatusNull), resp(0, StatusNull), resp(0, StatusNull), resp(0x102, 0), resp(0x103, 0)))
	f.Add(cat(6, 0))
	f.Add(cat(0xffffffff, 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 5 {
			return
		}
		fz := newFuzzNIC(t, SlotsMin+1, 8, true)
		n, c := fz.n, fz.c
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, size := range []int{60, 5000, 60} {
			k := (size + PageSize - 1) / PageSize
			var gso Extra
			if size > PageSize {
				gso = Extra{Type: ExtraGSO, GSOSize: 1448, GSOType: GSOTypeTCPv4}
			}
			if err := n.sendLocked(c, frame(size, 1), k, gso.GSOType != GSOTypeNone, gso); err != nil {
				t.Fatal(err)
			}
		}
		keep := in[4]
		for s := range 4 {
			if keep&(1<<s) != 0 {
				fz.grants.mapRef(backDom, n.tx[s].ref, false)
			}
		}
		prod := binary.LittleEndian.Uint32(in)
		slots := in[5:]
		page := fz.ringMem(0)
		for i := 0; i < 5 && i*TxResponseSize < len(slots); i++ {
			copy(page[ring.HeaderSize+i*TxRequestSize:][:TxResponseSize], slots[i*TxResponseSize:])
		}
		c.tx.Shared().Store(ring.RspProd, prod)
		n.serviceLocked(c)
		if prod > 5 {
			if !errors.Is(n.failed, ErrBackendBroken) {
				t.Fatalf("rsp_prod %d with 5 requests accepted", prod)
			}
			return
		}
		if n.failed != nil {
			t.Fatalf("NIC failed: %v", n.failed)
		}
		states := map[uint8]int{}
		for s, ts := range n.tx {
			states[ts.state]++
			if ts.state == txFree && s < 4 && keep&(1<<s) != 0 {
				t.Fatalf("slot %d freed while the backend maps its page", s)
			}
		}
		if states[txFree] != len(n.txFree) || states[txQuarantined] != len(n.txQuar) {
			t.Fatalf("tx states %v, %d free listed, %d quarantined", states, len(n.txFree), len(n.txQuar))
		}
		seen := map[uint16]bool{}
		for _, s := range n.txFree {
			if seen[s] {
				t.Fatalf("slot %d free twice", s)
			}
			seen[s] = true
		}
		if c.tx.Outstanding() == 0 && states[txInflight] != 0 {
			t.Fatalf("%d slots in flight on an empty ring", states[txInflight])
		}
		// Each response naming no slot, and the NULL the extra info
		// slot expects, may leave one slot unanswered.
		if c.nullDue < 0 || c.nullDue > 1 {
			t.Fatalf("%d NULL responses due, 1 extra info sent", c.nullDue)
		}
		if states[txInflight] > c.tx.Outstanding()+int(n.stats.TxBad)+1-c.nullDue {
			t.Fatalf("%d slots in flight with %d requests outstanding, %d bad responses, %d NULLs", states[txInflight], c.tx.Outstanding(), n.stats.TxBad, 1-c.nullDue)
		}
	})
}

// TestScanRxBounds runs scanRx over every prefix of a long chain: an
// incomplete packet never claims more slots than it has.
func TestScanRxBounds(t *testing.T) {
	var raw [][RxResponseSize]byte
	for i := range 30 {
		raw = append(raw, slot(RxResponse{ID: uint16(i), Flags: RxMoreData, Status: 100}))
	}
	for k := 0; k <= len(raw); k++ {
		s := scanRx(raw[:k], 0, 65535, false)
		if s.slots > k {
			t.Fatalf("%d responses: scan claims %d slots", k, s.slots)
		}
		if k <= SlotsMin && s.complete {
			t.Fatalf("%d responses of an open chain: complete", k)
		}
		if k > SlotsMin && (!s.complete || s.bad == nil || s.slots != SlotsMin+1) {
			t.Fatalf("%d responses: %+v", k, s)
		}
	}
}

// TestScanRxOneSlotExtra: a one-slot packet with extra info takes its
// extra slots with it, so the next packet is found where it starts.
func TestScanRxOneSlotExtra(t *testing.T) {
	for _, tc := range []struct {
		offload bool
		extras  []Extra
		slots   int
		good    bool
	}{
		{offload: true, extras: []Extra{{Type: ExtraGSO, GSOType: GSOTypeTCPv4, GSOSize: 1448}}, slots: 2, good: true},
		{offload: false, extras: []Extra{{Type: ExtraGSO, GSOType: GSOTypeTCPv4, GSOSize: 1448}}, slots: 2},
		{offload: true, extras: []Extra{{Type: ExtraHash, Flags: ExtraFlagMore}, {Type: ExtraGSO, GSOType: GSOTypeTCPv4, GSOSize: 1448}}, slots: 3},
	} {
		raw := [][RxResponseSize]byte{slot(RxResponse{Flags: RxExtraInfo, Status: 100})}
		for _, e := range tc.extras {
			raw = append(raw, extraSlot(e))
		}
		raw = append(raw, slot(RxResponse{ID: uint16(len(raw)), Status: 100}))
		s := scanRx(raw, 0, 1518, tc.offload)
		if s.slots != tc.slots || !s.complete || (s.bad == nil) != tc.good {
			t.Errorf("offload %v, extras %+v: %d slots, complete %v, bad %v; want %d slots, good %v", tc.offload, tc.extras, s.slots, s.complete, s.bad, tc.slots, tc.good)
		}
		next := scanRx(raw[s.slots:], uint32(s.slots), 1518, tc.offload)
		if next.bad != nil || next.slots != 1 || next.length != 100 {
			t.Errorf("offload %v: the packet after: %+v", tc.offload, next)
		}
	}
}

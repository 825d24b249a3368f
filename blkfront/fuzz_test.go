package blkfront

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/unikgo/unikgo/blockdev"
	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/xenpv/ring"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

// FuzzBackendKeys feeds parseInfo and the transport choices arbitrary
// backend values: they must be accepted into a sane Info or refused with
// an error, never panic.
func FuzzBackendKeys(f *testing.F) {
	f.Add("2048", "512", "", "0", "w", "1", "", "", "", "", "", "", "", uint16(0xffff))
	f.Add("2050", "4096", "4096", "4", "r", "0", "1", "1", "4096", "0", "1", "256", "2", uint16(0xffff))
	f.Add("18014398509481983", "512", "1048576", "7", "w!", "1", "1", "1", "0", "512", "0", "4096", "4", uint16(0xffff))
	f.Add("18446744073709551615", "512", "", "0", "", "", "", "", "", "", "", "", "", uint16(0x0001))
	f.Add("-1", "1000", "x", "ro", "x", "yes", "2", " 1", "700", "1", "9", "-5", "99999999999", uint16(0xaaaa))
	f.Add("0", "256", "0", "4294967296", "r", "00", "01", "1", "4294967295", "4294967295", "1", "4294967295", "4294967295", uint16(0xffff))
	f.Fuzz(func(t *testing.T, sectors, ss, pss, info, mode, flush, barrier, discard, gran, align, secure, indirect, order string, present uint16) {
		kv := map[string]string{}
		for i, kvp := range []struct{ k, v string }{
			{keySectors, sectors}, {keySectorSize, ss}, {keyPhysicalSectorSize, pss}, {keyInfo, info},
			{keyMode, mode}, {keyFlushCache, flush}, {keyBarrier, barrier}, {keyDiscard, discard},
			{keyDiscardGranularity, gran}, {keyDiscardAlignment, align}, {keyDiscardSecure, secure},
			{keyMaxIndirect, indirect},
		} {
			if present&(1<<i) != 0 {
				kv[kvp.k] = kvp.v
			}
		}
		in, err := parseInfo(kv)
		if err == nil {
			if !isPow2(uint64(in.SectorSize)) || in.SectorSize < 512 || in.SectorSize > PageSize {
				t.Fatalf("accepted sector size %d", in.SectorSize)
			}
			if in.PhysicalSectorSize < in.SectorSize || !isPow2(uint64(in.PhysicalSectorSize)) {
				t.Fatalf("accepted physical sector size %d with sector size %d", in.PhysicalSectorSize, in.SectorSize)
			}
			if in.Size() < 0 || in.Size()%int64(in.SectorSize) != 0 {
				t.Fatalf("size %d is not whole %d-byte sectors", in.Size(), in.SectorSize)
			}
			if in.Discard && (in.DiscardGranularity == 0 || in.DiscardGranularity%uint32(in.SectorSize) != 0) {
				t.Fatalf("discard granularity %d with sector size %d", in.DiscardGranularity, in.SectorSize)
			}
			segs, ind := segmentsPerRequest(in.MaxIndirectSegments, DefaultMaxSegments)
			if segs < MaxSegments || segs > MaxIndirectSegments || ind != (segs > MaxSegments) {
				t.Fatalf("segments %d indirect %v from %d", segs, ind, in.MaxIndirectSegments)
			}
		}
		o, err := parseRingPageOrder(order, present&(1<<12) != 0, MaxRingPageOrder)
		if err == nil && (o < 0 || o > MaxRingPageOrder) {
			t.Fatalf("ring order %d from %q", o, order)
		}
	})
}

// fuzzRig is a Device with a connection but no xenstore, whose ring the
// fuzzer writes responses into directly.
type fuzzRig struct {
	d    *Device
	c    *conn
	ops  []*op
	page []byte
}

func newFuzzRig(t testing.TB) *fuzzRig {
	mem := dmatest.New(4 << 20)
	g := newFakeGrants()
	d := &Device{
		cfg:  Config{Grants: g, Memory: mem, Device: vbdID},
		fe:   &xenbus.Frontend{BackendID: backDom},
		pool: pool{mem: mem, grants: g, max: 256},
	}
	d.cond.L = &d.mu
	r, err := mem.Alloc(PageSize)
	if err != nil {
		t.Fatal(err)
	}
	rg, err := ring.NewFront(r.Bytes, RequestSize)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := newFakeEvents().AllocUnbound(backDom)
	c := &conn{ring: rg, region: r, ch: ch, segs: MaxSegments, flush: FlushDiskCache,
		info: Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, Discard: true}}
	n := rg.Size()
	c.slots = make([]*op, n)
	for i := range n {
		c.freeIDs = append(c.freeIDs, uint16(n-1-i))
	}
	d.conn = c
	fr := &fuzzRig{d: d, c: c, page: r.Bytes}
	// Four requests outstanding: ids 0..3, generations 1..4.
	for _, o := range []*op{
		{kind: OpRead, sector: 0, buf: make([]byte, 4096)},
		{kind: OpWrite, sector: 8, buf: make([]byte, 1024)},
		{kind: OpFlushDiskCache},
		{kind: OpDiscard, sector: 16, nrSectors: 8},
	} {
		o.done = make(chan struct{})
		pages, ok, err := d.pool.take(c.pagesFor(o))
		if !ok || err != nil {
			t.Fatal("no pages")
		}
		d.mu.Lock()
		if err := d.issueLocked(c, o, pages); err != nil {
			t.Fatal(err)
		}
		d.mu.Unlock()
		fr.ops = append(fr.ops, o)
	}
	return fr
}

// responseBytes lays out responses as the fuzzer's input: a u32 producer
// advance, then 16-byte response slots.
func responseBytes(prod uint32, rsps ...Response) []byte {
	b := binary.LittleEndian.AppendUint32(nil, prod)
	for _, r := range rsps {
		s := make([]byte, ResponseSize)
		r.Put(s)
		b = append(b, s...)
	}
	return b
}

// FuzzResponses writes arbitrary responses and producer index into the
// ring under four outstanding requests and drains it: every request ends
// done with a known error or still outstanding, and nothing panics.
func FuzzResponses(f *testing.F) {
	tag := func(slot, gen uint64) uint64 { return slot | gen<<idSlotBits }
	f.Add(responseBytes(4,
		Response{ID: tag(0, 1), Operation: OpRead}, Response{ID: tag(1, 2), Operation: OpWrite},
		Response{ID: tag(2, 3), Operation: OpFlushDiskCache}, Response{ID: tag(3, 4), Operation: OpDiscard}))
	f.Add(responseBytes(2, Response{ID: tag(0, 1), Operation: OpWrite}, Response{ID: tag(1, 2), Operation: OpWrite, Status: 9}))
	f.Add(responseBytes(2, Response{ID: tag(2, 3), Operation: OpFlushDiskCache, Status: StatusEOPNOTSUPP}, Response{ID: tag(3, 4), Operation: OpDiscard, Status: StatusEOPNOTSUPP}))
	f.Add(responseBytes(3, Response{ID: 1 << 63, Operation: OpRead}, Response{ID: tag(0, 1), Operation: OpRead}, Response{ID: tag(0, 1), Operation: OpRead}))
	f.Add(responseBytes(5, Response{ID: tag(0, 1), Operation: OpRead}))
	f.Add(responseBytes(0xffffffff))
	f.Add(responseBytes(1, Response{ID: tag(1, 2), Operation: OpWrite, Status: StatusError}))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 4 {
			return
		}
		fr := newFuzzRig(t)
		prod := binary.LittleEndian.Uint32(in)
		slots := in[4:]
		for i := 0; i*ResponseSize < len(slots) && i < fr.c.ring.Size(); i++ {
			s := make([]byte, ResponseSize)
			copy(s, slots[i*ResponseSize:])
			copy(fr.page[ring.HeaderSize+i*RequestSize:], s)
		}
		binary.LittleEndian.PutUint32(fr.page[8:], prod)
		d := fr.d
		d.mu.Lock()
		d.drainLocked(fr.c)
		d.mu.Unlock()
		known := []error{ErrIO, ErrNotSupported, ErrBadResponse, ErrBackendBroken, blockdev.ErrClosed}
		done := 0
		for i, o := range fr.ops {
			select {
			case <-o.done:
				done++
				if o.err == nil {
					continue
				}
				ok := false
				for _, k := range known {
					ok = ok || errors.Is(o.err, k)
				}
				if !ok {
					t.Fatalf("op %d ended with an unexpected error: %v", i, o.err)
				}
			default:
				if d.failed != nil {
					t.Fatalf("op %d still outstanding on a failed device", i)
				}
			}
		}
		if prod > 4 && d.failed == nil {
			t.Fatalf("producer %d with 4 requests outstanding accepted", prod)
		}
		if d.failed == nil && uint64(done)+d.stats.DroppedResponses != uint64(prod) {
			t.Fatalf("%d responses: %d completed, %d dropped", prod, done, d.stats.DroppedResponses)
		}
	})
}

package gnttab

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/kernel/dma/dmatest"
)

// fakeXen simulates the hypervisor for one guest: table frames are the
// guest's own pages (as after add_to_physmap), and peers' grants are
// pages in foreign, keyed by granting domain and ref.
type fakeXen struct {
	mem       *dmatest.Memory
	nr, max   uint32
	mu        sync.Mutex
	tableGFN  map[uint32]uint64
	holes     map[uint64]bool
	mapped    map[uint64][]byte // hole gfn -> foreign page
	foreign   map[foreignKey][]byte
	nextH     uint32
	handles   map[uint32]uint64
	failMapOf Ref // a ref whose map fails with bad_gntref
}

type foreignKey struct {
	dom DomID
	ref Ref
}

func newFake(nr, max uint32) *fakeXen {
	return &fakeXen{
		mem: dmatest.New(1 << 24), nr: nr, max: max,
		tableGFN: map[uint32]uint64{}, holes: map[uint64]bool{}, mapped: map[uint64][]byte{},
		foreign: map[foreignKey][]byte{}, handles: map[uint32]uint64{}, failMapOf: 1 << 30,
	}
}

func (f *fakeXen) querySize() (uint32, uint32, error) { return f.nr, f.max, nil }

func (f *fakeXen) mapTableFrame(idx uint32, gfn uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if idx > f.nr || idx >= f.max {
		return fmt.Errorf("fake: frame %d beyond %d (max %d)", idx, f.nr, f.max)
	}
	if idx == f.nr {
		f.nr++
	}
	f.tableGFN[idx] = gfn
	return nil
}

func (f *fakeXen) mapGrants(ops []mapGrantRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range ops {
		op := &ops[i]
		gfn := op.hostAddr / pageSize
		p, ok := f.foreign[foreignKey{DomID(op.dom), Ref(op.ref)}]
		switch {
		case Ref(op.ref) == f.failMapOf || !ok:
			op.status = int16(statusBadGntref)
		case !f.holes[gfn]:
			op.status = int16(statusBadVirtAddr) // RAM still there: a bug in the table
		default:
			f.holes[gfn] = false
			f.mapped[gfn] = p
			f.nextH++
			f.handles[f.nextH] = gfn
			op.handle = f.nextH
		}
	}
	return nil
}

func (f *fakeXen) unmapGrants(ops []unmapGrantRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range ops {
		op := &ops[i]
		gfn, ok := f.handles[op.handle]
		if !ok || gfn != op.hostAddr/pageSize {
			op.status = int16(statusBadHandle)
			continue
		}
		delete(f.handles, op.handle)
		delete(f.mapped, gfn)
		f.holes[gfn] = true
	}
	return nil
}

func (f *fakeXen) copy(ops []copyOp) error {
	for i := range ops {
		ops[i].status = int16(statusOkay)
		if ops[i].flags&gntcopySourceGref != 0 {
			if _, ok := f.foreign[foreignKey{DomID(ops[i].source.domid), Ref(ops[i].source.refOrFrame)}]; !ok {
				ops[i].status = int16(statusBadGntref)
			}
		}
	}
	return nil
}

func (f *fakeXen) releaseFrames(gfns []uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range gfns {
		f.holes[g] = true
	}
	return nil
}

func (f *fakeXen) page(gfn uint64) []byte {
	f.mu.Lock()
	p, ok := f.mapped[gfn]
	f.mu.Unlock()
	if ok {
		return p
	}
	b, err := f.mem.Slice(gfn*pageSize, pageSize)
	if err != nil {
		panic(err)
	}
	return b
}

// entry reads ref's entry as Xen would.
func entry(t *Table, ref Ref) (flags, dom uint16, frame uint32) {
	hdr, fr := t.words(ref)
	w := atomic.LoadUint32(hdr)
	return uint16(w), uint16(w >> 16), atomic.LoadUint32(fr)
}

// peerUse sets or clears GTF_reading|GTF_writing as Xen does while the
// peer maps the page.
func peerUse(t *Table, ref Ref, on bool) {
	hdr, _ := t.words(ref)
	for {
		w := atomic.LoadUint32(hdr)
		n := w &^ (gtfReading | gtfWriting)
		if on {
			n |= gtfReading | gtfWriting
		}
		if atomic.CompareAndSwapUint32(hdr, w, n) {
			return
		}
	}
}

func mustTable(t *testing.T, f *fakeXen) *Table {
	t.Helper()
	tb, err := newTable(f, f.mem)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestGrantWritesEntry(t *testing.T) {
	tb := mustTable(t, newFake(1, 4))
	ref, err := tb.Grant(5, 0x12345, false)
	if err != nil {
		t.Fatal(err)
	}
	if ref < reservedRefs {
		t.Fatalf("Grant returned reserved ref %d", ref)
	}
	type e struct {
		Flags, Dom uint16
		Frame      uint32
	}
	fl, d, fr := entry(tb, ref)
	if diff := cmp.Diff(e{gtfPermitAccess, 5, 0x12345}, e{fl, d, fr}); diff != "" {
		t.Errorf("entry (-want +got):\n%s", diff)
	}
	ro, err := tb.Grant(6, 7, true)
	if err != nil {
		t.Fatal(err)
	}
	if fl, _, _ := entry(tb, ro); fl != gtfPermitAccess|gtfReadOnly {
		t.Errorf("read-only grant flags = %#x, want %#x", fl, gtfPermitAccess|gtfReadOnly)
	}
	if err := tb.Revoke(ref); err != nil {
		t.Fatal(err)
	}
	if fl, _, _ := entry(tb, ref); fl != 0 {
		t.Errorf("flags after revoke = %#x, want 0", fl)
	}
	if err := tb.Revoke(ref); err == nil {
		t.Error("second revoke of the same ref succeeded")
	}
	if _, err := tb.Grant(1, 1<<32, false); err == nil {
		t.Error("grant of a frame above 2^32 succeeded")
	}
}

func TestReservedEntriesUntouched(t *testing.T) {
	f := newFake(1, 1)
	tb := mustTable(t, f)
	// What the toolstack put in ref 1 (xenstore) must survive.
	hdr, fr := tb.words(1)
	atomic.StoreUint32(fr, 0xfeff)
	atomic.StoreUint32(hdr, 0<<16|gtfPermitAccess)
	seen := map[Ref]bool{}
	for {
		ref, err := tb.Grant(2, 9, false)
		if errors.Is(err, ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ref < reservedRefs || seen[ref] {
			t.Fatalf("Grant returned ref %d (reserved or twice)", ref)
		}
		seen[ref] = true
	}
	if len(seen) != entriesPerPage-reservedRefs {
		t.Errorf("one frame gave %d refs, want %d", len(seen), entriesPerPage-reservedRefs)
	}
	if fl, _, frame := entry(tb, 1); fl != gtfPermitAccess || frame != 0xfeff {
		t.Errorf("xenstore entry changed: flags %#x frame %#x", fl, frame)
	}
}

func TestGrowsToMax(t *testing.T) {
	f := newFake(1, 3)
	tb := mustTable(t, f)
	n := 0
	for {
		_, err := tb.Grant(2, 9, false)
		if errors.Is(err, ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if want := 3*entriesPerPage - reservedRefs; n != want {
		t.Errorf("granted %d before exhaustion, want %d", n, want)
	}
	if f.nr != 3 {
		t.Errorf("table has %d frames, want 3", f.nr)
	}
}

func TestInUseNeverReused(t *testing.T) {
	tb := mustTable(t, newFake(1, 1))
	ref, err := tb.Grant(3, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	peerUse(tb, ref, true)
	if err := tb.Revoke(ref); !errors.Is(err, ErrInUse) {
		t.Fatalf("Revoke of a mapped grant = %v, want ErrInUse", err)
	}
	if fl, _, _ := entry(tb, ref); fl&gtfPermitAccess == 0 {
		t.Fatal("a grant in use lost its permit flag")
	}
	done := make(chan struct{})
	if err := tb.RevokeLater(ref, func() { close(done) }); err != nil {
		t.Fatal(err)
	}
	// Every other ref can be handed out, never this one.
	for {
		r, err := tb.Grant(3, 1, false)
		if errors.Is(err, ErrExhausted) {
			break
		}
		if r == ref {
			t.Fatalf("ref %d handed out again while the peer uses it", ref)
		}
	}
	select {
	case <-done:
		t.Fatal("RevokeLater finished while the peer still uses the page")
	case <-time.After(3 * retryEvery):
	}
	if tb.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1", tb.Pending())
	}
	peerUse(tb, ref, false)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RevokeLater did not finish after the peer let go")
	}
	r, err := tb.Grant(4, 2, false)
	if err != nil || r != ref {
		t.Fatalf("after the deferred revoke Grant = %d, %v; want the freed ref %d", r, err, ref)
	}
}

func TestMapUnmap(t *testing.T) {
	f := newFake(1, 1)
	tb := mustTable(t, f)
	p1, p2 := make([]byte, pageSize), make([]byte, pageSize)
	p1[0], p2[0] = 'a', 'b'
	f.foreign[foreignKey{7, 20}] = p1
	f.foreign[foreignKey{7, 21}] = p2
	m, err := tb.Map(7, []Ref{21, 20}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := []byte{m.Pages()[0][0], m.Pages()[1][0]}
	if diff := cmp.Diff([]byte("ba"), got); diff != "" {
		t.Errorf("mapped pages (-want +got):\n%s", diff)
	}
	m.Pages()[0][1] = 'x' // writable mapping reaches the peer's page
	if p2[1] != 'x' {
		t.Error("write through the mapping did not reach the peer's page")
	}
	live := f.mem.Live()
	if err := m.Unmap(); err != nil {
		t.Fatal(err)
	}
	if len(f.mapped) != 0 {
		t.Errorf("%d pages still mapped after Unmap", len(f.mapped))
	}
	// The holes are reused: no new memory for the next mapping.
	m2, err := tb.Map(7, []Ref{20}, true)
	if err != nil {
		t.Fatal(err)
	}
	if f.mem.Live() != live {
		t.Errorf("second map allocated memory: %d regions, was %d", f.mem.Live(), live)
	}
	if err := m2.Unmap(); err != nil {
		t.Fatal(err)
	}
}

func TestMapFailureCleansUp(t *testing.T) {
	f := newFake(1, 1)
	tb := mustTable(t, f)
	f.foreign[foreignKey{7, 20}] = make([]byte, pageSize)
	f.foreign[foreignKey{7, 21}] = make([]byte, pageSize)
	f.failMapOf = 21
	_, err := tb.Map(7, []Ref{20, 21}, false)
	if !errors.Is(err, statusBadGntref) {
		t.Fatalf("Map with a bad ref = %v, want invalid grant reference", err)
	}
	if len(f.mapped) != 0 || len(f.handles) != 0 {
		t.Errorf("a failed Map left %d pages mapped", len(f.mapped))
	}
	if _, err := tb.Map(8, []Ref{1}, false); err == nil {
		t.Error("Map of a ref the domain never granted succeeded")
	}
	if len(tb.holes) != 2 {
		t.Errorf("hole pool has %d frames after failed maps, want 2", len(tb.holes))
	}
}

func TestCopy(t *testing.T) {
	f := newFake(1, 1)
	tb := mustTable(t, f)
	f.foreign[foreignKey{3, 9}] = make([]byte, pageSize)
	ok := CopyOp{Src: CopyPtr{Dom: 3, Ref: 9}, Dst: CopyPtr{Local: true, Frame: 5}, Len: 100}
	if err := tb.Copy([]CopyOp{ok}); err != nil {
		t.Fatal(err)
	}
	bad := CopyOp{Src: CopyPtr{Dom: 3, Ref: 10}, Dst: CopyPtr{Local: true, Frame: 5}, Len: 100}
	if err := tb.Copy([]CopyOp{ok, bad}); !errors.Is(err, statusBadGntref) {
		t.Errorf("Copy with a bad ref = %v, want invalid grant reference", err)
	}
	cross := ok
	cross.Src.Offset = pageSize - 10
	if err := tb.Copy([]CopyOp{cross}); err == nil {
		t.Error("Copy across a page end succeeded")
	}
}

func TestConcurrentGrantRevoke(t *testing.T) {
	tb := mustTable(t, newFake(1, 2))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				ref, err := tb.Grant(DomID(g), uint64(i), false)
				if err != nil {
					t.Error(err)
					return
				}
				if _, d, fr := entry(tb, ref); d != uint16(g) || fr != uint32(i) {
					t.Errorf("ref %d holds dom %d frame %d, want %d %d: shared with another grant", ref, d, fr, g, i)
					return
				}
				if err := tb.Revoke(ref); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, want := tb.Free(), entriesPerPage-reservedRefs; got != want {
		t.Errorf("Free = %d after all revokes, want %d", got, want)
	}
}

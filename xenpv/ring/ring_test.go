package ring

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const page = 4096

var le = binary.LittleEndian

// TestHeaderLayout checks the header against shared/docs/xen-abi.md,
// "Shared rings": req_prod@0, req_event@4, rsp_prod@8, rsp_event@12,
// entries at 64.
func TestHeaderLayout(t *testing.T) {
	got := map[string]int{
		"req_prod": ReqProdOffset, "req_event": ReqEventOffset,
		"rsp_prod": RspProdOffset, "rsp_event": RspEventOffset,
		"entries": HeaderSize,
	}
	want := map[string]int{"req_prod": 0, "req_event": 4, "rsp_prod": 8, "rsp_event": 12, "entries": 64}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("header offsets (-want +got):\n%s", diff)
	}
	for _, i := range []Index{ReqProd, ReqEvent, RspProd, RspEvent} {
		mem := make([]byte, page)
		s, err := NewShared(mem)
		if err != nil {
			t.Fatal(err)
		}
		s.Store(i, 0x11223344)
		if v := le.Uint32(mem[i:]); v != 0x11223344 {
			t.Errorf("%v: stored at offset %d reads %#x", i, int(i), v)
		}
		if s.Load(i) != 0x11223344 {
			t.Errorf("%v: Load differs", i)
		}
	}
	if ReqProd.String() != "req_prod" || RspEvent.String() != "rsp_event" || Index(3).String() != "Index(3)" {
		t.Error("Index names")
	}
}

// TestSlots checks the entry counts of the rings the drivers use:
// 2^floor(log2((bytes-64)/slot)), and what xen-abi.md says of them (32
// blkif requests per page, 256 netif tx and rx entries per page).
func TestSlots(t *testing.T) {
	tests := []struct {
		name       string
		size, slot int
		want       int
	}{
		{"blkif, one page", page, 112, 32},
		{"blkif, 2 pages", 2 * page, 112, 64},
		{"blkif, 4 pages", 4 * page, 112, 128},
		{"blkif, 16 pages", 16 * page, 112, 512},
		{"netif tx (12-byte requests)", page, 12, 256},
		{"netif rx (8-byte entries)", page, 8, 256},
		{"xenstore-sized 1-byte slots", page, 1, 2048},
		{"exactly one slot", 64 + 112, 112, 1},
		{"no slot", 64 + 111, 112, 0},
		{"smaller than the header", 10, 8, 0},
		{"zero slot size", page, 0, 0},
		{"negative slot size", page, -4, 0},
	}
	for _, tc := range tests {
		if got := Slots(tc.size, tc.slot); got != tc.want {
			t.Errorf("%s: Slots(%d, %d) = %d, want %d", tc.name, tc.size, tc.slot, got, tc.want)
		}
	}
	if _, err := NewFront(make([]byte, 100), 112); err == nil {
		t.Error("NewFront accepted memory with no slot")
	}
	if _, err := NewBack(make([]byte, 100), 112); err == nil {
		t.Error("NewBack accepted memory with no slot")
	}
	mem := make([]byte, page+1)
	if _, err := NewFront(mem[1:], 8); err == nil {
		t.Error("NewFront accepted unaligned memory")
	}
}

func TestFrontInit(t *testing.T) {
	mem := make([]byte, 2*page)
	for i := range mem {
		mem[i] = 0xEE
	}
	f, err := NewFront(mem, 112)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != 64 || f.SlotSize() != 112 || f.Free() != 64 || f.Outstanding() != 0 {
		t.Errorf("size %d slot %d free %d outstanding %d", f.Size(), f.SlotSize(), f.Free(), f.Outstanding())
	}
	want := []uint32{0, 1, 0, 1}
	got := []uint32{le.Uint32(mem[0:]), le.Uint32(mem[4:]), le.Uint32(mem[8:]), le.Uint32(mem[12:])}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("header after SHARED_RING_INIT (-want +got):\n%s", diff)
	}
	for i, b := range mem[16:] {
		if b != 0 {
			t.Fatalf("byte %d not cleared", 16+i)
		}
	}
}

// TestFrontProtocol walks the front end through the io/ring.h steps with
// the back end's side written by hand.
func TestFrontProtocol(t *testing.T) {
	mem := make([]byte, page)
	f, _ := NewFront(mem, 112)
	sh := f.Shared()

	// The first push notifies (req_event is 1); a second while the back
	// end has not re-armed req_event does not.
	s, err := f.NextRequest()
	if err != nil || len(s) != 112 {
		t.Fatalf("NextRequest = %d bytes, %v", len(s), err)
	}
	s[0] = 1
	if !f.Push() {
		t.Error("first push: no notify")
	}
	if mem[64] != 1 || sh.Load(ReqProd) != 1 {
		t.Errorf("request not at entry 0 or req_prod %d", sh.Load(ReqProd))
	}
	f.NextRequest()
	if f.Push() {
		t.Error("second push notified although req_event was not re-armed")
	}
	if f.Push() {
		t.Error("push of nothing notified")
	}
	sh.Store(ReqEvent, 3) // the back end consumed both and wants the next
	s, _ = f.NextRequest()
	s[0] = 3
	if !f.Push() || mem[64+2*112] != 3 {
		t.Error("third push: no notify or wrong slot")
	}
	if f.Free() != 29 || f.Outstanding() != 3 || f.ProducedIndex() != 3 {
		t.Errorf("free %d outstanding %d produced %d", f.Free(), f.Outstanding(), f.ProducedIndex())
	}

	// Two responses.
	le.PutUint64(mem[64:], 0xAA)
	le.PutUint64(mem[64+112:], 0xBB)
	sh.Store(RspProd, 2)
	if n, err := f.Responses(); n != 2 || err != nil {
		t.Fatalf("Responses = %d, %v", n, err)
	}
	buf := make([]byte, 16)
	if r := f.Response(1, buf); r == nil || le.Uint64(r) != 0xBB {
		t.Errorf("Response(1) = %x", r)
	}
	if r := f.Response(2, buf); r != nil {
		t.Error("Response past the validated count returned data")
	}
	if r := f.NextResponse(buf); r == nil || le.Uint64(r) != 0xAA || len(r) != 16 {
		t.Errorf("first response %x", r)
	}
	if r := f.NextResponse(make([]byte, 200)); len(r) != 112 || le.Uint64(r) != 0xBB {
		t.Errorf("second response: %d bytes, %x", len(r), r[:8])
	}
	if f.NextResponse(buf) != nil {
		t.Error("a third response out of two")
	}
	if f.FinalCheck() {
		t.Error("final check found work")
	}
	if ev := sh.Load(RspEvent); ev != 3 {
		t.Errorf("rsp_event = %d, want rsp_cons+1 = 3", ev)
	}
	sh.Store(RspProd, 3)
	if !f.FinalCheck() {
		t.Error("final check missed a response")
	}
	if f.ConsumedIndex() != 2 {
		t.Errorf("consumed %d", f.ConsumedIndex())
	}
}

func TestFrontFull(t *testing.T) {
	f, _ := NewFront(make([]byte, page), 112)
	for i := 0; i < f.Size(); i++ {
		if _, err := f.NextRequest(); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := f.NextRequest(); !errors.Is(err, ErrFull) {
		t.Errorf("request past the ring's size: %v", err)
	}
	f.Push()
	f.Shared().Store(RspProd, 1)
	if n, _ := f.Responses(); n != 1 {
		t.Fatal(n)
	}
	f.Consume(5) // only one validated
	if f.Free() != 1 || f.ConsumedIndex() != 1 {
		t.Errorf("free %d consumed %d", f.Free(), f.ConsumedIndex())
	}
}

// TestFrontOverrun: responses beyond what was pushed, or a producer going
// backwards, break the ring for good.
func TestFrontOverrun(t *testing.T) {
	tests := []struct {
		name string
		prod uint32
	}{
		{"one more than pushed", 4},
		{"produced but not pushed", 5},
		{"far ahead", 1 << 31},
		{"backwards", 0xFFFFFFFF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := NewFront(make([]byte, page), 8)
			for range 3 {
				f.NextRequest()
			}
			f.Push()
			f.NextRequest() // produced, not pushed
			f.Shared().Store(RspProd, tc.prod)
			if _, err := f.Responses(); !errors.Is(err, ErrOverrun) {
				t.Fatalf("Responses = %v, want ErrOverrun", err)
			}
			f.Shared().Store(RspProd, 1)
			if _, err := f.Responses(); !errors.Is(err, ErrOverrun) || !errors.Is(f.Err(), ErrOverrun) {
				t.Errorf("after a good index: %v; the ring must stay broken", err)
			}
			if f.Response(0, make([]byte, 8)) != nil || f.NextResponse(make([]byte, 8)) != nil {
				t.Error("a broken ring handed out a response")
			}
			if f.FinalCheck() || f.Await(2) {
				t.Error("a broken ring reports work")
			}
		})
	}
	// A producer going back behind what it reported breaks the ring, even
	// if nothing was consumed.
	f, _ := NewFront(make([]byte, page), 8)
	for range 3 {
		f.NextRequest()
	}
	f.Push()
	f.Shared().Store(RspProd, 3)
	f.Responses()
	f.Consume(1)
	f.Shared().Store(RspProd, 2)
	if _, err := f.Responses(); !errors.Is(err, ErrOverrun) {
		t.Errorf("rsp_prod back from 3 to 2: %v", err)
	}
	// Exactly what was pushed is fine.
	f, _ = NewFront(make([]byte, page), 8)
	for range 3 {
		f.NextRequest()
	}
	f.Push()
	f.Shared().Store(RspProd, 3)
	if n, err := f.Responses(); n != 3 || err != nil {
		t.Errorf("Responses = %d, %v", n, err)
	}
}

func TestAwait(t *testing.T) {
	f, _ := NewFront(make([]byte, page), 8)
	for range 4 {
		f.NextRequest()
	}
	f.Push()
	sh := f.Shared()
	sh.Store(RspProd, 1)
	if f.Await(2) {
		t.Error("Await(2) with one response")
	}
	if ev := sh.Load(RspEvent); ev != 2 {
		t.Errorf("rsp_event = %d, want 2", ev)
	}
	if !f.Await(1) {
		t.Error("Await(1) with one response")
	}
	if f.Await(0); sh.Load(RspEvent) != 2 {
		t.Error("Await(0) (taken as 1) with work present changed rsp_event")
	}
	f.Await(1000) // clamped to the ring's size
	if ev := sh.Load(RspEvent); ev != 256 {
		t.Errorf("rsp_event = %d after Await(1000), want 256", ev)
	}
}

// TestBackProtocol is the back end's half, with the front end's side
// written by hand.
func TestBackProtocol(t *testing.T) {
	mem := make([]byte, page)
	if _, err := NewFront(mem, 12); err != nil { // SHARED_RING_INIT
		t.Fatal(err)
	}
	b, err := NewBack(mem, 12)
	if err != nil {
		t.Fatal(err)
	}
	sh := b.Shared()
	if b.Size() != 256 || b.SlotSize() != 12 {
		t.Fatalf("size %d slot %d", b.Size(), b.SlotSize())
	}
	if _, err := b.NextResponse(); !errors.Is(err, ErrFull) {
		t.Errorf("a response with no request consumed: %v", err)
	}
	if n, err := b.Requests(); n != 0 || err != nil {
		t.Errorf("Requests = %d, %v", n, err)
	}
	if b.FinalCheck() || sh.Load(ReqEvent) != 1 {
		t.Errorf("final check on an empty ring: req_event %d", sh.Load(ReqEvent))
	}
	mem[64], mem[64+12] = 7, 8
	sh.Store(ReqProd, 2)
	if n, err := b.Requests(); n != 2 || err != nil {
		t.Fatalf("Requests = %d, %v", n, err)
	}
	buf := make([]byte, 12)
	if r := b.Request(1, buf); r == nil || r[0] != 8 {
		t.Errorf("Request(1) = %v", r)
	}
	if r := b.NextRequest(buf); r == nil || r[0] != 7 {
		t.Errorf("first request %v", r)
	}
	b.Consume(1)
	if b.NextRequest(buf) != nil {
		t.Error("a third request out of two")
	}
	if b.Unanswered() != 2 || b.ConsumedIndex() != 2 {
		t.Errorf("unanswered %d consumed %d", b.Unanswered(), b.ConsumedIndex())
	}
	s, _ := b.NextResponse()
	s[0] = 0x70
	if !b.Push() {
		t.Error("first response push did not notify (rsp_event 1)")
	}
	s, _ = b.NextResponse()
	s[0] = 0x80
	if b.Push() {
		t.Error("second push notified with rsp_event not re-armed")
	}
	if _, err := b.NextResponse(); !errors.Is(err, ErrFull) {
		t.Error("more responses than requests consumed")
	}
	if sh.Load(RspProd) != 2 || mem[64] != 0x70 || mem[64+12] != 0x80 || b.ProducedIndex() != 2 {
		t.Error("responses not in the request slots")
	}
}

// TestBackOverrun: a front end may not produce into slots whose responses
// the back end has not produced.
func TestBackOverrun(t *testing.T) {
	mem := make([]byte, page)
	NewFront(mem, 8)
	b, _ := NewBack(mem, 8)
	sh := b.Shared()
	sh.Store(ReqProd, 256) // a full ring is fine
	if n, err := b.Requests(); n != 256 || err != nil {
		t.Fatalf("full ring: %d, %v", n, err)
	}
	b.Consume(10)
	for range 4 {
		b.NextResponse()
	}
	b.Push()
	// 6 consumed and unanswered: the front end can be at most 4 past 256.
	sh.Store(ReqProd, 260)
	if n, err := b.Requests(); n != 250 || err != nil {
		t.Fatalf("Requests = %d, %v", n, err)
	}
	sh.Store(ReqProd, 261)
	if _, err := b.Requests(); !errors.Is(err, ErrOverrun) {
		t.Fatalf("Requests = %v, want ErrOverrun", err)
	}
	sh.Store(ReqProd, 12)
	if _, err := b.Requests(); !errors.Is(err, ErrOverrun) || !errors.Is(b.Err(), ErrOverrun) {
		t.Error("the ring did not stay broken")
	}
	if b.Request(0, make([]byte, 8)) != nil || b.FinalCheck() {
		t.Error("a broken ring hands out work")
	}

	// An index behind what was reported, but not behind the consumer.
	mem = make([]byte, page)
	NewFront(mem, 8)
	b, _ = NewBack(mem, 8)
	b.Shared().Store(ReqProd, 5)
	b.Requests()
	b.Consume(2)
	b.Shared().Store(ReqProd, 4)
	if _, err := b.Requests(); !errors.Is(err, ErrOverrun) {
		t.Errorf("req_prod back from 5 to 4: %v", err)
	}

	// An index behind the consumer.
	mem = make([]byte, page)
	NewFront(mem, 8)
	b, _ = NewBack(mem, 8)
	b.Shared().Store(ReqProd, 5)
	b.Requests()
	b.Consume(5)
	b.Shared().Store(ReqProd, 3)
	if _, err := b.Requests(); !errors.Is(err, ErrOverrun) {
		t.Errorf("backwards req_prod: %v", err)
	}
}

func TestAttachBack(t *testing.T) {
	mem := make([]byte, page)
	f, _ := NewFront(mem, 8)
	for range 10 {
		f.NextRequest()
	}
	f.Push()
	b, _ := AttachBack(mem, 8, 7)
	if n, err := b.Requests(); n != 3 || err != nil {
		t.Errorf("Requests after attaching at 7 = %d, %v", n, err)
	}
}

// TestWraps runs the indexes across 2^32 with both ends.
func TestWraps(t *testing.T) {
	mem := make([]byte, page)
	f, _ := NewFront(mem, 8)
	start := uint32(0xFFFFFF00)
	f.reqPvt, f.reqPush, f.rspCons, f.rspSeen = start, start, start, start
	sh := f.Shared()
	sh.Store(ReqProd, start)
	sh.Store(RspProd, start)
	sh.Store(ReqEvent, start+1)
	sh.Store(RspEvent, start+1)
	b, _ := AttachBack(mem, 8, start)
	buf := make([]byte, 8)
	for i := range 600 {
		for j := range 3 {
			s, err := f.NextRequest()
			if err != nil {
				t.Fatal(err)
			}
			le.PutUint32(s, uint32(i*3+j))
		}
		f.Push()
		n, err := b.Requests()
		if n != 3 || err != nil {
			t.Fatalf("step %d: back sees %d, %v", i, n, err)
		}
		for range n {
			v := le.Uint32(b.NextRequest(buf))
			s, _ := b.NextResponse()
			le.PutUint32(s, v^0xFFFF)
		}
		b.Push()
		if n, err := f.Responses(); n != 3 || err != nil {
			t.Fatalf("step %d: front sees %d, %v", i, n, err)
		}
		for j := range 3 {
			if v := le.Uint32(f.NextResponse(buf)); v != uint32(i*3+j)^0xFFFF {
				t.Fatalf("step %d: response %#x", i, v)
			}
		}
		if f.Free() != f.Size() || f.FinalCheck() || b.FinalCheck() {
			t.Fatalf("step %d: free %d", i, f.Free())
		}
	}
	if f.ProducedIndex() > start {
		t.Fatal("indexes did not wrap")
	}
}

// TestConcurrent streams requests through a front end and a back end in
// separate goroutines that sleep until notified, as the drivers do: no
// request or response is lost, none is seen twice, and no wake-up is
// missed (a missed one would hang the test). Run with -race.
func TestConcurrent(t *testing.T) {
	for _, pages := range []int{1, 2} {
		mem := make([]byte, pages*page)
		f, _ := NewFront(mem, 16)
		b, _ := NewBack(mem, 16)
		const total = 200000
		toBack, toFront := make(chan struct{}, 1), make(chan struct{}, 1)
		kick := func(c chan struct{}) {
			select {
			case c <- struct{}{}:
			default:
			}
		}
		var wg sync.WaitGroup
		wg.Add(1)
		errc := make(chan error, 2)
		go func() { // the back end echoes each request, plus one
			defer wg.Done()
			buf := make([]byte, 16)
			served := 0
			for served < total {
				n, err := b.Requests()
				if err != nil {
					errc <- err
					return
				}
				for range n {
					v := le.Uint64(b.NextRequest(buf))
					s, err := b.NextResponse()
					if err != nil {
						errc <- err
						return
					}
					le.PutUint64(s, v+1)
					served++
				}
				if n > 0 && b.Push() {
					kick(toFront)
				}
				if n == 0 && !b.FinalCheck() {
					select {
					case <-toBack:
					case <-time.After(10 * time.Second):
						errc <- errors.New("back end: missed wake-up")
						return
					}
				}
			}
		}()
		buf := make([]byte, 16)
		sent, got := 0, 0
		for got < total {
			for sent < total && f.Free() > 0 {
				s, _ := f.NextRequest()
				le.PutUint64(s, uint64(sent)*2)
				sent++
				if sent%7 == 0 && f.Push() {
					kick(toBack)
				}
			}
			if f.Push() {
				kick(toBack)
			}
			n, err := f.Responses()
			if err != nil {
				t.Fatal(err)
			}
			for range n {
				if v := le.Uint64(f.NextResponse(buf)); v != uint64(got)*2+1 {
					t.Fatalf("response %d = %d", got, v)
				}
				got++
			}
			if n == 0 && !f.FinalCheck() {
				select {
				case <-toFront:
				case err := <-errc:
					t.Fatal(err)
				case <-time.After(10 * time.Second):
					t.Fatalf("front end: missed wake-up after %d responses", got)
				}
			}
		}
		wg.Wait()
		select {
		case err := <-errc:
			t.Fatal(err)
		default:
		}
	}
}

func TestSharedChecks(t *testing.T) {
	if _, err := NewShared(make([]byte, 63)); err == nil {
		t.Error("NewShared accepted 63 bytes")
	}
	s, _ := NewShared(make([]byte, 64))
	defer func() {
		if recover() == nil {
			t.Error("Load of a non-header offset did not panic")
		}
	}()
	s.Load(Index(2))
}

package blkfront

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Tests of the TEMPORARY private ring (see ring.go), against
// shared/docs/xen-abi.md "Shared rings": header req_prod@0, req_event@4,
// rsp_prod@8, rsp_event@12, entries at 64, 2^floor(log2((bytes-64)/112))
// entries.

func TestRingSize(t *testing.T) {
	got := map[int]int{}
	for _, pages := range []int{1, 2, 4, 8, 16} {
		r, err := newFrontRing(make([]byte, pages*PageSize))
		if err != nil {
			t.Fatal(err)
		}
		got[pages] = r.size()
	}
	want := map[int]int{1: 32, 2: 64, 4: 128, 8: 256, 16: 512}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ring entries by pages (-want +got):\n%s", diff)
	}
	if _, err := newFrontRing(make([]byte, 100)); err == nil {
		t.Error("a ring too small for one request accepted")
	}
}

func TestRingProtocol(t *testing.T) {
	page := make([]byte, PageSize)
	for i := range page {
		page[i] = 0xEE
	}
	r, _ := newFrontRing(page)
	le := binary.LittleEndian
	if le.Uint32(page[0:]) != 0 || le.Uint32(page[4:]) != 1 || le.Uint32(page[8:]) != 0 || le.Uint32(page[12:]) != 1 {
		t.Fatalf("header after init: % x, want prod 0, events 1", page[:16])
	}
	// The first request notifies (req_event is 1); a second one while the
	// backend has not re-armed req_event does not.
	copy(r.nextRequest(), []byte{1})
	if !r.push() {
		t.Error("first push: no notify")
	}
	if page[64] != 1 || le.Uint32(page[0:]) != 1 {
		t.Errorf("request not at entry 0 or req_prod %d", le.Uint32(page[0:]))
	}
	r.nextRequest()
	if r.push() {
		t.Error("second push notified although req_event was not re-armed")
	}
	le.PutUint32(page[4:], 3) // backend consumed both and wants the next
	copy(r.nextRequest(), []byte{3})
	if !r.push() || page[64+2*RequestSize] != 3 {
		t.Error("third push: no notify or wrong slot")
	}
	if r.free() != 29 {
		t.Errorf("free = %d, want 29", r.free())
	}
	// Two responses; rsp_prod past the three requests is refused.
	le.PutUint64(page[64:], 0xAA)
	le.PutUint64(page[64+RequestSize:], 0xBB)
	le.PutUint32(page[8:], 2)
	if n, err := r.responses(); n != 2 || err != nil {
		t.Fatalf("responses = %d, %v", n, err)
	}
	if got := ParseResponse(r.response()).ID; got != 0xAA {
		t.Errorf("first response id %#x", got)
	}
	if got := ParseResponse(r.response()).ID; got != 0xBB {
		t.Errorf("second response id %#x", got)
	}
	if r.finalCheck() {
		t.Error("final check found work")
	}
	if ev := le.Uint32(page[12:]); ev != 3 {
		t.Errorf("rsp_event = %d, want rsp_cons+1 = 3", ev)
	}
	le.PutUint32(page[8:], 4)
	if _, err := r.responses(); err == nil {
		t.Error("rsp_prod 4 with 3 requests produced accepted")
	}
	le.PutUint32(page[8:], 3)
	if !r.finalCheck() {
		t.Error("final check missed a response")
	}
}

// TestRingWraps runs the indices across 2^32.
func TestRingWraps(t *testing.T) {
	page := make([]byte, PageSize)
	fr, _ := newFrontRing(page)
	r := fr.(*privFront)
	start := uint32(0xFFFFFFF0)
	r.reqPvt, r.rspCon = start, start
	binary.LittleEndian.PutUint32(page[0:], start)
	binary.LittleEndian.PutUint32(page[8:], start)
	for i := range 40 {
		r.nextRequest()
		r.push()
		binary.LittleEndian.PutUint32(page[8:], start+uint32(i)+1)
		if n, err := r.responses(); n != 1 || err != nil {
			t.Fatalf("step %d: responses = %d, %v", i, n, err)
		}
		r.response()
		if r.free() != r.size() {
			t.Fatalf("step %d: free = %d", i, r.free())
		}
	}
}

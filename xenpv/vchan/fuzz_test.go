package vchan

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"testing"
)

// stubChannel is an event channel that counts notifications and never
// delivers any: the fuzz target only uses the non-blocking paths.
type stubChannel struct{ notified int }

func (s *stubChannel) Port() uint32            { return 1 }
func (s *stubChannel) Notify() error           { s.notified++; return nil }
func (s *stubChannel) Events() <-chan struct{} { return nil }
func (s *stubChannel) Close() error            { return nil }

// seedHeader builds a header page prefix a correct server would write.
func seedHeader(left, right int, grants int) []byte {
	b := make([]byte, HeaderSize+GrantRefSize*grants)
	binary.LittleEndian.PutUint16(b[OffsetLeftOrder:], uint16(left))
	binary.LittleEndian.PutUint16(b[OffsetRightOrder:], uint16(right))
	b[OffsetCliLive] = byte(LiveWaiting)
	b[OffsetSrvLive] = byte(LiveConnected)
	b[OffsetCliNotify] = NotifyWrite
	for i := range grants {
		binary.LittleEndian.PutUint32(b[OffsetGrants+GrantRefSize*i:], uint32(8+i))
	}
	return b
}

// seedOps encodes fuzz operations: one opcode byte and a u32 argument each.
func seedOps(ops ...uint64) []byte {
	var b []byte
	for _, op := range ops {
		b = append(b, byte(op>>32))
		b = binary.LittleEndian.AppendUint32(b, uint32(op))
	}
	return b
}

// flat returns a copy of a ring's bytes in ring order, built without the
// code under test.
func flat(r ringData) []byte {
	var b []byte
	for _, s := range r.segs {
		b = append(b, s...)
	}
	return b
}

// FuzzRing attaches a client (or sets up a server) over a shared page and
// rings whose bytes come from the fuzzer, then interleaves reads and writes
// with arbitrary peer stores into the header. Nothing may panic or index out
// of range; every byte read must be the ring byte at the consumer position;
// every error must be one the API documents.
func FuzzRing(f *testing.F) {
	f.Add(seedHeader(10, 11, 0), []byte("ring data"), seedOps(0x2_00000010, 0x0_00000100, 0x1_00000020, 0x3_00000020))
	f.Add(seedHeader(11, 10, 0), []byte{1, 2, 3}, seedOps(0x1_00000800, 0x1_00000001, 0x3_00000400, 0x1_00000400))
	f.Add(seedHeader(12, 13, 3), []byte("pages"), seedOps(0x2_00001000, 0x0_00000fff, 0x0_00000fff, 0x2_00002000, 0x0_00000001))
	f.Add(seedHeader(20, 20, 512), []byte{0xff}, seedOps(0x2_00100000, 0x0_000fffff))
	f.Add(seedHeader(10, 11, 0), []byte{}, seedOps(0x2_00000801, 0x0_00000001))
	f.Add(seedHeader(10, 11, 0), []byte{}, seedOps(0x4_00000114, 0x0_00000001, 0x1_00000001))
	f.Add(seedHeader(10, 11, 0), []byte{}, seedOps(0x5_00000005, 0x0_00000001))
	f.Add(seedHeader(10, 10, 0), []byte{}, seedOps(0x0_00000001))
	f.Add(seedHeader(20, 10, 256), []byte{}, seedOps(0x0_00000001))
	f.Add(seedHeader(10, 11, 0), []byte{}, seedOps(0x82_00000010, 0x0_00000100, 0x1_00000900, 0x3_00000800, 0x1_00000900))
	f.Add(seedHeader(16, 12, 17), []byte("server"), seedOps(0x81_00010000, 0x3_00008000, 0x1_00010000, 0x2_00000001, 0x0_00000001))
	f.Add(append(seedHeader(12, 11, 1), 0), []byte{9}, seedOps(0x1_00000001, 0x6_00000000, 0x3_00000001, 0x1_00001000))

	f.Fuzz(func(t *testing.T, header, ringBytes, ops []byte) {
		page := make([]byte, PageSize)
		copy(page, header)
		mapRing := func(refs []GrantRef, writable bool) ([][]byte, error) {
			if len(refs) > PageSize/GrantRefSize {
				t.Fatalf("asked to map %d refs, more than a page can list", len(refs))
			}
			pages := make([][]byte, len(refs))
			for i := range pages {
				pages[i] = make([]byte, PageSize)
				if len(ringBytes) > 0 {
					for j := 0; j < PageSize; j += copy(pages[i][j:], ringBytes) {
					}
				}
			}
			return pages, nil
		}
		ev := &stubChannel{}
		server := len(ops) > 0 && ops[0]&0x80 != 0
		var c *Conn
		if server {
			hdr, _ := headerOf(page)
			lay, err := checkLayout(Orders{int(hdr.leftOrder), int(hdr.rightOrder)})
			if err != nil {
				return // a server only ever uses orders it chose
			}
			ring := func(p ringPlace, order int) ringData {
				var segs [][]byte
				if p.inPage {
					segs = [][]byte{page[p.offset : p.offset+1<<order]}
				} else {
					segs, _ = mapRing(make([]GrantRef, p.pages), true)
				}
				r, err := newRingData(order, segs)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			c = newConn(hdr, true, ring(lay.left, lay.orders.Left), ring(lay.right, lay.orders.Right), ev, func() error { return nil })
		} else {
			var err error
			c, err = attachClient(page, mapRing, ev, func() error { return nil })
			if err != nil {
				if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrPeerClosed) {
					t.Fatalf("attachClient: unexpected error kind: %v", err)
				}
				return
			}
		}
		// Peer-side views of the indices the peer may legitimately write,
		// and of ours, which it may not.
		peerProd, peerCons := &c.in.idx.prod, &c.out.idx.cons
		ownCons, ownProd := &c.in.idx.cons, &c.out.idx.prod
		buf := make([]byte, 5000)
		for i := 0; i+5 <= len(ops) && i < 5*300; i += 5 {
			arg := binary.LittleEndian.Uint32(ops[i+1:])
			var err error
			switch ops[i] & 0x7f % 7 {
			case 0: // read
				k := int(arg%uint32(len(buf))) + 1
				before := c.in.cons
				want := flat(c.in.data)
				var n int
				n, err = c.tryRead(buf[:k], 1)
				if n < 0 || n > k || uint32(n) > c.in.data.size {
					t.Fatalf("tryRead(%d) = %d", k, n)
				}
				for j := range n {
					if w := want[(before+uint32(j))&(c.in.data.size-1)]; buf[j] != w {
						t.Fatalf("read byte %d = %#x, ring has %#x", j, buf[j], w)
					}
				}
				if c.in.cons != before+uint32(n) {
					t.Fatalf("consumer moved %d for %d bytes read", c.in.cons-before, n)
				}
			case 1: // write
				k := int(arg%uint32(len(buf))) + 1
				for j := range buf[:k] {
					buf[j] = byte(j) ^ byte(arg)
				}
				before := c.out.prod
				var n int
				n, err = c.tryWrite(buf[:k], 1)
				if n < 0 || n > k || uint32(n) > c.out.data.size {
					t.Fatalf("tryWrite(%d) = %d", k, n)
				}
				got := flat(c.out.data)
				for j := range n {
					if g := got[(before+uint32(j))&(c.out.data.size-1)]; g != buf[j] {
						t.Fatalf("written byte %d in ring = %#x, want %#x", j, g, buf[j])
					}
				}
			case 2: // peer produces
				peerProd.Store(arg)
			case 3: // peer consumes
				peerCons.Store(arg)
			case 4: // peer scribbles one header byte (orders, live, notify, ...)
				off := int(arg % HeaderSize)
				page[off] = byte(arg >> 8)
			case 5: // peer rewrites one of our own indices
				if arg&1 == 0 {
					ownCons.Store(arg)
				} else {
					ownProd.Store(arg)
				}
			case 6: // status and space queries
				if _, err = c.State(); err == nil {
					if _, err = c.DataReady(); err == nil {
						_, err = c.BufferSpace()
					}
				}
			}
			switch {
			case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrPeerClosed):
			case errors.Is(err, ErrProtocol):
				return // the connection is dead from here on
			default:
				t.Fatalf("op %d: unexpected error kind: %v", ops[i], err)
			}
		}
	})
}

// FuzzParseNumber checks that xenstore values are accepted only in the
// canonical form a server writes.
func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"1", "42", "4294967295", "4294967296", "0", "", "-1", "+5", "07", " 9", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseNumber(KeyRingRef, s)
		if err != nil {
			return
		}
		if v == 0 || strconv.FormatUint(uint64(v), 10) != s {
			t.Fatalf("parseNumber(%q) = %d: not the canonical form", s, v)
		}
	})
}

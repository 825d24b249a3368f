package xenstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"
)

func seedMsg(typ MsgType, req, tx uint32, payload string) []byte {
	b, _ := MarshalMessage(typ, req, tx, []byte(payload))
	return b
}

// FuzzReadMessage feeds arbitrary bytes to the message reader: it must
// never panic or allocate beyond PayloadMax, and what it accepts must
// re-encode to the bytes it read.
func FuzzReadMessage(f *testing.F) {
	f.Add(seedMsg(TypeRead, 1, 0, "value"))
	f.Add(seedMsg(TypeWatchEvent, 0, 0, "/a\x00tok\x00"))
	f.Add(append(seedMsg(TypeError, 3, 2, "EAGAIN\x00"), seedMsg(TypeDirectory, 4, 0, "a\x00b\x00")...))
	f.Add(hdr(2, 1, 0, 4097))
	f.Add(hdr(0xffff, 1, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			start := len(data) - r.Len()
			m, err := ReadMessage(r)
			if err != nil {
				return
			}
			if len(m.Payload) > PayloadMax || int(m.Len) != len(m.Payload) || !m.Type.Valid() {
				t.Fatalf("accepted %+v", m.Header)
			}
			b, err := MarshalMessage(m.Type, m.ReqID, m.TxID, m.Payload)
			if err != nil || !bytes.Equal(b, data[start:start+len(b)]) {
				t.Fatalf("re-encoding differs: %v", err)
			}
		}
	})
}

// FuzzReplyParsers runs every payload parser on arbitrary bytes: errors,
// never panics, and what is accepted satisfies the parser's promises.
func FuzzReplyParsers(f *testing.F) {
	for _, s := range []string{"", "\x00", "OK\x00", "ENOENT\x00", "EINVAL: detail\x00", "a\x00b\x00", "r5\x00n0\x00", "12\x00", "a/b\x00", "\xff\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if err := parseError(p); err == nil {
			t.Fatal("parseError returned nil")
		} else if xe := (*Error)(nil); errors.As(err, &xe) {
			if len(xe.Name) < 2 || xe.Name[0] != 'E' || !printable(xe.Msg) {
				t.Fatalf("parseError accepted %q as %+v", p, xe)
			}
		}
		if names, err := parseNames(p); err == nil {
			for _, n := range names {
				if validateName(n) != nil {
					t.Fatalf("bad name %q accepted", n)
				}
			}
		}
		if perms, err := parsePerms(p); err == nil {
			if len(perms) == 0 {
				t.Fatal("empty perms accepted")
			}
			for _, pm := range perms {
				if q, err := ParsePerm(pm.String()); err != nil || q != pm {
					t.Fatalf("perm %v does not round-trip", pm)
				}
			}
		}
		if id, err := parseTxID(p); err == nil && id == 0 {
			t.Fatal("transaction id 0 accepted")
		}
		ack(p, nil)
		if err := ValidatePath(string(p)); err == nil && bytes.Contains(p, []byte("//")) {
			t.Fatalf("path %q accepted", p)
		}
		if ss, err := splitStrings(p); err == nil {
			if !bytes.Equal(joinStrings(ss...), p) {
				t.Fatalf("splitStrings(%q) does not round-trip", p)
			}
		}
	})
}

// scriptedStream is a transport whose incoming bytes are fixed; it hands
// them out only after the client has written its first request, so that
// the fuzzed replies meet a pending request 1.
type scriptedStream struct {
	mu      sync.Mutex
	wrote   chan struct{}
	once    sync.Once
	in      *bytes.Reader
	closed  chan struct{}
	closeMu sync.Once
}

func (s *scriptedStream) Read(p []byte) (int, error) {
	select {
	case <-s.wrote:
	case <-s.closed:
		return 0, ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.in.Read(p)
}

func (s *scriptedStream) Write(p []byte) (int, error) {
	s.once.Do(func() { close(s.wrote) })
	return len(p), nil
}

func (s *scriptedStream) Close() error {
	s.closeMu.Do(func() { close(s.closed) })
	return nil
}

// FuzzClientStream gives a client arbitrary xenstored output in answer to
// one request: the call must finish (with a value or an error) and the
// client must neither panic nor hang.
func FuzzClientStream(f *testing.F) {
	f.Add(uint8(0), seedMsg(TypeRead, 1, 0, "value"))
	f.Add(uint8(1), seedMsg(TypeDirectory, 1, 0, "a\x00b\x00"))
	f.Add(uint8(2), seedMsg(TypeTransactionStart, 1, 0, "5\x00"))
	f.Add(uint8(3), append(seedMsg(TypeWatchEvent, 0, 0, "/w\x00go-1\x00"), seedMsg(TypeWatch, 1, 0, "OK\x00")...))
	f.Add(uint8(4), seedMsg(TypeError, 1, 0, "ENOENT\x00"))
	f.Add(uint8(5), seedMsg(TypeGetPerms, 1, 0, "n0\x00r1\x00"))
	f.Add(uint8(1), append(seedMsg(TypeError, 1, 0, "E2BIG\x00"), seedMsg(TypeDirectoryPart, 2, 0, "3\x00a\x00\x00")...))
	f.Add(uint8(0), hdr(2, 1, 0, 0xffffffff))
	f.Fuzz(func(t *testing.T, op uint8, data []byte) {
		s := &scriptedStream{wrote: make(chan struct{}), in: bytes.NewReader(data), closed: make(chan struct{})}
		c := NewClient(s)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		switch op % 6 {
		case 0:
			_, err = c.Read(ctx, "/a")
		case 1:
			_, err = c.Directory(ctx, "/a")
		case 2:
			_, err = c.Begin(ctx)
		case 3:
			var w *Watch
			if w, err = c.Watch(ctx, "/w", ""); err == nil {
				c.Unwatch(ctx, w)
			}
		case 4:
			err = c.Write(ctx, "/a", "v")
		case 5:
			_, err = c.GetPerms(ctx, "/a")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// Only legitimate if the stream ended without a reply and the
			// client noticed; otherwise the call hung.
			select {
			case <-c.Done():
			case <-time.After(time.Second):
				t.Fatal("call hung on a live client")
			}
		}
	})
}

// FuzzRing runs the guest end of the ring over an arbitrary page (any
// indices, feature and error fields, ring contents) with an arbitrary
// sequence of reads and writes, and a peer that moves or rewrites indices
// between operations. Nothing may panic or hang, and the guest never
// consumes past the producer or produces past the consumer.
//
// The page is described by its control words plus a short pattern that
// fills the data area: the data bytes are only ever copied, and a small
// input keeps the fuzzer's minimisation fast.
func FuzzRing(f *testing.F) {
	f.Add(uint32(0), uint32(0), uint32(0), uint32(0), uint32(0), uint32(0), []byte("x"), []byte{0x10, 0x85, 0x20})
	f.Add(uint32(0), uint32(0), uint32(0), uint32(1025), uint32(0), uint32(0), []byte{}, []byte{0x01})
	f.Add(uint32(0xfffffc00), uint32(0), uint32(0xfffffffe), uint32(5), uint32(0), uint32(0), []byte("ab"), []byte{0x30, 0xff, 0x80, 0x7f, 0x02})
	f.Add(uint32(0), uint32(0), uint32(0), uint32(0), uint32(FeatureError), uint32(3), []byte{}, []byte{0x01})
	f.Add(uint32(5), uint32(3), uint32(7), uint32(7), uint32(0), uint32(0), []byte{}, []byte{0x81, 0x01})
	f.Fuzz(ringBody)
}

func ringBody(t *testing.T, reqCons, reqProd, rspCons, rspProd, features, errField uint32, fill, ops []byte) {
	page := make([]byte, 4096)
	if len(fill) > 0 {
		for i := 0; i < 2*RingSize; i += copy(page[i:2*RingSize], fill) {
		}
	}
	for _, w := range []struct {
		off int
		v   uint32
	}{{RingReqConsOff, reqCons}, {RingReqProdOff, reqProd}, {RingRspConsOff, rspCons}, {RingRspProdOff, rspProd}, {RingServerFeaturesOff, features}, {RingErrorOff, errField}} {
		binary.LittleEndian.PutUint32(page[w.off:], w.v)
	}
	r := NewRingConn(page, func() error { return nil }, func(ctx context.Context) error {
		return errors.New("no event") // an empty or full ring ends the call
	})
	ctx := context.Background()
	buf := make([]byte, 2048)
	if len(ops) > 64 {
		ops = ops[:64]
	}
	for i, op := range ops {
		n := int(op&0x7f)*16 + 1
		var err error
		var got int
		prod := binary.LittleEndian.Uint32(page[RingRspProdOff:])
		if op&0x80 == 0 {
			got, err = r.ReadContext(ctx, buf[:n])
		} else {
			got, err = r.WriteContext(ctx, buf[:n])
		}
		if got > n || got < 0 {
			t.Fatalf("op %d moved %d bytes of %d", i, got, n)
		}
		if err == nil {
			reqProd := binary.LittleEndian.Uint32(page[RingReqProdOff:])
			reqCons := binary.LittleEndian.Uint32(page[RingReqConsOff:])
			rspCons := binary.LittleEndian.Uint32(page[RingRspConsOff:])
			if op&0x80 == 0 && prod-rspCons > RingSize {
				t.Fatalf("read past the producer at op %d: rsp %d/%d", i, rspCons, prod)
			}
			if op&0x80 != 0 && reqProd-reqCons > RingSize {
				t.Fatalf("wrote past the consumer at op %d: req %d/%d", i, reqCons, reqProd)
			}
		}
		// The peer moves: consume requests, produce responses, or scribble.
		switch i % 3 {
		case 0:
			binary.LittleEndian.PutUint32(page[RingReqConsOff:], binary.LittleEndian.Uint32(page[RingReqProdOff:]))
		case 1:
			binary.LittleEndian.PutUint32(page[RingRspProdOff:], prod+uint32(op))
		case 2:
			if op&1 != 0 {
				binary.LittleEndian.PutUint32(page[RingRspConsOff:], uint32(op)*0x01010101)
			}
		}
	}
	r.Close()
	if _, err := r.Read(buf); err == nil {
		t.Fatal("Read after Close succeeded")
	}
}

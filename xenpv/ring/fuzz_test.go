package ring

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzRing drives a front end and a back end over one ring with a script
// of operations, some of them hostile writes of arbitrary values into the
// header. Each script byte picks an operation; some take an argument from
// the following bytes.
//
// While nobody has scribbled on the header, the model must hold: requests
// and responses arrive once, in order, with their contents; an end that
// went to sleep after a final check is notified before anything is left
// waiting for it (no lost wake-ups). After a hostile write, the ends must
// not panic, never report more entries than possible, and a drain loop
// ending on FinalCheck must end.
func FuzzRing(f *testing.F) {
	f.Add([]byte{0, 2, 1, 3, 2, 3, 4})
	f.Add([]byte{0, 4, 0, 4, 1, 5, 2, 3, 4, 0, 1, 1, 6, 2})
	f.Add([]byte{3, 4, 0, 1, 1, 2, 3, 0, 2, 1, 2, 1, 2})
	f.Add([]byte{0, 3, 7, 2, 0xff, 0xff, 0xff, 0xff, 2, 1})    // hostile rsp_prod
	f.Add([]byte{0, 3, 7, 0, 0x10, 0x00, 0x00, 0x00, 1, 2, 3}) // hostile req_prod
	f.Add([]byte{0, 1, 7, 3, 0, 0, 0, 0x80, 0, 1, 1, 2})       // hostile rsp_event
	f.Add([]byte{8, 0, 1, 8, 1, 2, 8, 2})
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 4096 {
			return
		}
		mem := make([]byte, 64+8*4) // 4 entries: wraps and fills quickly
		fr, err := NewFront(mem, 8)
		if err != nil {
			t.Fatal(err)
		}
		bk, _ := NewBack(mem, 8)
		sh := fr.Shared()
		var (
			hostile          bool
			nextReq, nextRsp uint64 // next value to send, next expected back
			backNext         uint64 // next value the back end expects
			// An end asleep awaits this many unconsumed entries (0: awake).
			frontAsleep, backSlp uint32
		)
		buf := make([]byte, 8)
		arg := func(i *int) byte {
			*i++
			if *i < len(script) {
				return script[*i]
			}
			return 0
		}
		for i := 0; i < len(script); i++ {
			switch script[i] % 9 {
			case 0: // front end produces 1..4 requests and pushes
				k := int(arg(&i)%4) + 1
				for range k {
					s, err := fr.NextRequest()
					if err != nil {
						if !errors.Is(err, ErrFull) || fr.Free() != 0 {
							t.Fatalf("NextRequest: %v with %d free", err, fr.Free())
						}
						break
					}
					binary.LittleEndian.PutUint64(s, nextReq)
					nextReq++
				}
				if fr.Push() {
					backSlp = 0
				}
			case 1: // back end consumes requests and answers some of them
				n, err := bk.Requests()
				if err != nil {
					if !hostile {
						t.Fatalf("Requests: %v", err)
					}
					continue
				}
				if n > bk.Size() {
					t.Fatalf("%d requests on a %d-entry ring", n, bk.Size())
				}
				answer := int(arg(&i)%5) + 1
				for range n {
					v := binary.LittleEndian.Uint64(bk.NextRequest(buf))
					if !hostile && v != backNext {
						t.Fatalf("back end got request %d, want %d", v, backNext)
					}
					backNext++
				}
				for range answer {
					s, err := bk.NextResponse()
					if err != nil {
						break
					}
					binary.LittleEndian.PutUint64(s, ^uint64(0)) // filled below
				}
				// Answer in order: the response to request k is k+1000.
				for j := bk.ProducedIndex() - bk.rspPush; j > 0; j-- {
					idx := bk.ProducedIndex() - j
					binary.LittleEndian.PutUint64(bk.l.slot(idx), uint64(idx)+1000)
				}
				if bk.Push() {
					frontAsleep = 0
				}
			case 2: // front end consumes every response
				n, err := fr.Responses()
				if err != nil {
					if !hostile {
						t.Fatalf("Responses: %v", err)
					}
					continue
				}
				if n > fr.Outstanding() {
					t.Fatalf("%d responses with %d outstanding", n, fr.Outstanding())
				}
				for range n {
					r := fr.NextResponse(buf)
					if r == nil {
						t.Fatal("validated response missing")
					}
					if v := binary.LittleEndian.Uint64(r); !hostile && v != nextRsp+1000 {
						t.Fatalf("response %d, want %d", v, nextRsp+1000)
					}
					nextRsp++
				}
			case 3: // front end goes to sleep if nothing is left
				if !fr.FinalCheck() {
					frontAsleep = 1
				}
			case 4: // back end goes to sleep if nothing is left
				if !bk.FinalCheck() {
					backSlp = 1
				}
			case 5: // front end sleeps until several responses are there
				n := max(1, int(arg(&i)%6))
				if !fr.Await(n) {
					frontAsleep = uint32(min(n, fr.Size()))
				}
			case 6: // back end sleeps until several requests are there
				n := max(1, int(arg(&i)%6))
				if !bk.Await(n) {
					backSlp = uint32(min(n, bk.Size()))
				}
			case 7: // hostile: a header word gets an arbitrary value
				w := Index(4 * (arg(&i) % 4))
				v := uint32(arg(&i)) | uint32(arg(&i))<<8 | uint32(arg(&i))<<16 | uint32(arg(&i))<<24
				sh.Store(w, v)
				hostile = true
			case 8: // drain loops as drivers write them: they must end
				for rounds := 0; ; rounds++ {
					if rounds > 100 {
						t.Fatal("front drain loop does not end")
					}
					n, err := fr.Responses()
					if err != nil {
						break
					}
					fr.Consume(n)
					nextRsp += uint64(n)
					if !fr.FinalCheck() {
						break
					}
				}
				for rounds := 0; ; rounds++ {
					if rounds > 100 {
						t.Fatal("back drain loop does not end")
					}
					n, err := bk.Requests()
					if err != nil {
						break
					}
					bk.Consume(n)
					backNext += uint64(n)
					if !bk.FinalCheck() {
						break
					}
				}
			}
			if fr.Free() < 0 || fr.Free() > fr.Size() || bk.Unanswered() < 0 || bk.Unanswered() > bk.Size() {
				t.Fatalf("free %d, unanswered %d", fr.Free(), bk.Unanswered())
			}
			if hostile {
				continue
			}
			// No lost wake-ups: a sleeping end has nothing waiting.
			if frontAsleep > 0 && sh.Load(RspProd)-fr.rspCons >= frontAsleep {
				t.Fatalf("front end asleep awaiting %d with responses %d..%d waiting", frontAsleep, fr.rspCons, sh.Load(RspProd))
			}
			if backSlp > 0 && sh.Load(ReqProd)-bk.reqCons >= backSlp {
				t.Fatalf("back end asleep awaiting %d with requests %d..%d waiting", backSlp, bk.reqCons, sh.Load(ReqProd))
			}
		}
	})
}

package ring

import "testing"

// BenchmarkRoundTrip is one request through both ends in one goroutine:
// produce, push, consume, answer, push, consume.
func BenchmarkRoundTrip(b *testing.B) {
	mem := make([]byte, page)
	f, _ := NewFront(mem, 112)
	bk, _ := NewBack(mem, 112)
	buf := make([]byte, 112)
	for range b.N {
		s, _ := f.NextRequest()
		s[0] = 1
		f.Push()
		bk.Requests()
		bk.NextRequest(buf)
		r, _ := bk.NextResponse()
		r[0] = 2
		bk.Push()
		f.Responses()
		f.NextResponse(buf[:16])
		f.FinalCheck()
		bk.FinalCheck()
	}
}

// BenchmarkBatch moves a full ring of requests per round.
func BenchmarkBatch(b *testing.B) {
	mem := make([]byte, page)
	f, _ := NewFront(mem, 8)
	bk, _ := NewBack(mem, 8)
	buf := make([]byte, 8)
	b.SetBytes(256 * 8)
	for range b.N {
		for range 256 {
			s, _ := f.NextRequest()
			s[0] = 1
		}
		f.Push()
		n, _ := bk.Requests()
		for range n {
			bk.NextRequest(buf)
			bk.NextResponse()
		}
		bk.Push()
		n, _ = f.Responses()
		f.Consume(n)
	}
}

package serve

import "testing"

// TestRxRingWraps moves 1 MiB through a ring in odd-sized pieces, so that
// both ends wrap many times, into vectors of two or three slices: the
// bytes must come out in order. (The ends take turns: in the program the
// producer and the server's receive calls hold one lock, and the kernel
// runs with interrupts off, so copies never overlap a write.)
func TestRxRingWraps(t *testing.T) {
	r := new(RxRing)
	const total = 1 << 20
	var got []byte
	put := 0
	for step := 0; len(got) < total; step++ {
		if step%3 != 2 && put < total {
			a, b := r.Free()
			n := 0
			for _, s := range [][]byte{a, b} {
				for i := range s {
					if put+n == total || n == 7777+step%1000 {
						break
					}
					s[i] = byte((put + n) % 251)
					n++
				}
			}
			r.Put(n)
			put += n
		}
		size := 1000 + step%5000
		buf := make([]byte, size)
		dst := [][]byte{buf[:size/3], buf[size/3 : size/2], buf[size/2:]}
		if step%2 == 0 {
			dst = [][]byte{buf[:size/7], buf[size/7:]}
		}
		n, _ := r.Take(dst, step%11 == 0)
		if step%11 == 0 {
			continue // a peek takes nothing
		}
		got = append(got, buf[:n]...)
	}
	for i, b := range got {
		if b != byte(i%251) {
			t.Fatalf("byte %d is %d, want %d", i, b, i%251)
		}
	}
	if len(got) != total || r.Len() != 0 {
		t.Errorf("took %d bytes, %d left in the ring; want %d, 0", len(got), r.Len(), total)
	}
}

// TestRxRingWant: a consumer that takes bytes while the producer waits
// for space says so once.
func TestRxRingWant(t *testing.T) {
	r := new(RxRing)
	a, _ := r.Free()
	if len(a) != RxRingSize {
		t.Fatalf("empty ring offers %d bytes, want %d", len(a), RxRingSize)
	}
	r.Put(len(a))
	if a, b := r.Free(); len(a)+len(b) != 0 {
		t.Fatalf("full ring offers %d bytes", len(a)+len(b))
	}
	r.Want.Store(1)
	buf := make([]byte, 100)
	if n, space := r.Take([][]byte{buf}, true); n != 100 || space {
		t.Errorf("peek: %d bytes, space %v; want 100, false", n, space)
	}
	if n, space := r.Take([][]byte{buf}, false); n != 100 || !space {
		t.Errorf("take: %d bytes, space %v; want 100, true", n, space)
	}
	if n, space := r.Take([][]byte{buf}, false); n != 100 || space {
		t.Errorf("second take: %d bytes, space %v; want 100, false", n, space)
	}
	if a, b := r.Free(); len(a) != 200 || len(b) != 0 {
		t.Errorf("free after taking 200: %d+%d bytes, want 200+0", len(a), len(b))
	}
}

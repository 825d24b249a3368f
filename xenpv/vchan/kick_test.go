package vchan_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/vchan/host"
)

// get32 loads a u32 from the shared page as a peer would.
func get32(page []byte, off int) uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&page[off])).Load()
}

// TestLostEventResent plays Xen's vchan-socket-proxy in server mode, which
// takes one event for the client's arrival and then waits for another
// before it reads. A request written right after Dial has its event
// coalesce with the arrival's; the client, waiting for the answer with its
// request unread, must send its event again, or both ends wait forever.
// It must do so whether its reader went to sleep after the request was
// written or before (QubesDB's client reads while another goroutine
// writes; a lab sync waited out its deadline so).
func TestLostEventResent(t *testing.T) {
	for _, readFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "write then read", true: "read then write"}[readFirst], func(t *testing.T) {
			testLostEventResent(t, readFirst)
		})
	}
}

func testLostEventResent(t *testing.T, readFirst bool) {
	hv := host.New()
	page, ev := fakeServer(t, hv, 10, 11, func([]byte) {}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := vchan.Dial(ctx, hv.Platform(clientDom), serverDom, testPort)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	answer := make(chan string, 1)
	read := func() {
		buf := make([]byte, 64)
		n, err := cli.Read(buf)
		if err != nil {
			answer <- "error: " + err.Error()
			return
		}
		answer <- string(buf[:n])
	}
	asked := func() bool {
		return uint8(get32(page, vchan.OffsetCliLive)>>((vchan.OffsetSrvNotify-vchan.OffsetCliLive)*8))&vchan.NotifyWrite != 0
	}
	if readFirst {
		go read()
		// The reader asks for the server's writes just before it sleeps.
		for !asked() {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
	req := []byte("request")
	if _, err := cli.Write(req); err != nil {
		t.Fatal(err)
	}
	<-ev.Events() // the arrival and the request's event, coalesced
	if live := vchan.Live(uint8(get32(page, vchan.OffsetCliLive))); live != vchan.LiveConnected {
		t.Fatalf("client live byte %d after Dial, want %d", live, vchan.LiveConnected)
	}
	if !readFirst {
		go read()
	}
	start := time.Now()
	select {
	case <-ev.Events():
		t.Logf("event re-sent after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("no event from the client in 5 s with its request unread: it would wait for its answer forever")
	}
	prod := get32(page, vchan.OffsetLeftProd)
	if got := string(page[vchan.SmallRingOffset : vchan.SmallRingOffset+prod]); got != string(req) {
		t.Fatalf("left ring holds %q, want %q", got, req)
	}
	put32(page, vchan.OffsetLeftCons, prod)
	copy(page[vchan.LargeRingOffset:], "answer")
	put32(page, vchan.OffsetRightProd, uint32(len("answer")))
	// The client asks for this event in srv_notify; it may not have asked
	// yet, and then it finds the answer when it looks again.
	if asked() {
		if err := ev.Notify(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case got := <-answer:
		if got != "answer" {
			t.Errorf("Read: %q, want %q", got, "answer")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after the answer")
	}
}

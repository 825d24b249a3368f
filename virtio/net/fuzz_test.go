package net_test

import (
	"bytes"
	"testing"

	vnet "github.com/unikgo/unikgo/virtio/net"
)

// FuzzCheckRx checks received buffers with arbitrary contents and used
// lengths: a frame that passes is the bytes after the header, within the
// used length, at least an Ethernet header and at most maxFrame long,
// with a header that asks for no offload.
func FuzzCheckRx(f *testing.F) {
	ok := append(make([]byte, vnet.HeaderLen), bytes.Repeat([]byte{0xab}, 60)...)
	f.Add(ok, uint32(len(ok)))
	f.Add(ok, uint32(11))
	f.Add(ok, uint32(1<<31))
	f.Fuzz(func(t *testing.T, buf []byte, n uint32) {
		const maxFrame = 1518
		frame, err := vnet.CheckRx(buf, n, maxFrame)
		if err != nil {
			return
		}
		if uint64(n) > uint64(len(buf)) || len(frame) != int(n)-vnet.HeaderLen || len(frame) < 14 || len(frame) > maxFrame {
			t.Fatalf("frame of %d bytes from %d used of %d", len(frame), n, len(buf))
		}
		if !bytes.Equal(frame, buf[vnet.HeaderLen:n]) {
			t.Fatal("frame is not the bytes after the header")
		}
		h, err := vnet.ParseHeader(buf)
		if err != nil || h.GSOType != vnet.GSONone || h.Flags&vnet.HdrFNeedsCsum != 0 || h.NumBuffers > 1 {
			t.Fatalf("accepted header %+v (%v)", h, err)
		}
	})
}

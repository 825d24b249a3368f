// Command vchan talks to dom0's own libxenvchan (vchan-socket-proxy) over
// real grant tables and event channels, in both roles:
//
//  1. server on port 5000 for dom0, with a 64 KiB write ring (16 granted
//     pages): reads dom0's line, answers "pong <line>" and Payload bytes;
//  2. client of dom0's server on port 5001 (libxenvchan's default 1 KiB
//     rings in the shared page): reads BlobSize bytes, prints their
//     SHA-256 and answers with their count.
//
// The test in qemu-tests/xen drives dom0's side and checks both streams.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/vchan/guest"
)

// Payload is what the server sends after its pong line: a byte pattern the
// test recomputes.
const (
	PayloadSize = 200000
	BlobSize    = 65536
)

func fail(format string, args ...any) {
	fmt.Printf("vchan: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// drain waits until the peer has read everything written, since
// vchan-socket-proxy drops what is still in the ring when the vchan closes.
func drain(ctx context.Context, c *vchan.Conn) {
	_, size := c.RingSizes()
	for {
		n, err := c.BufferSpace()
		if err != nil {
			fail("waiting for dom0 to read: %v", err)
		}
		if n == size {
			return
		}
		select {
		case <-ctx.Done():
			fail("dom0 left %d bytes unread", size-n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p, err := guest.Platform(ctx)
	if err != nil {
		fail("%v", err)
	}

	srv, err := vchan.Listen(p, 0, 5000, 4096, 65536)
	if err != nil {
		fail("listen: %v", err)
	}
	fmt.Printf("vchan: domain %d listening on port 5000\n", p.Self)
	if err := srv.WaitConnected(ctx); err != nil {
		fail("waiting for dom0: %v", err)
	}
	line, err := bufio.NewReader(srv).ReadString('\n')
	if err != nil {
		fail("reading dom0's line: %v", err)
	}
	payload := make([]byte, PayloadSize)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	if _, err := io.WriteString(srv, "pong "+line); err != nil {
		fail("write: %v", err)
	}
	if _, err := srv.Write(payload); err != nil {
		fail("write payload: %v", err)
	}
	drain(ctx, srv)
	if err := srv.Close(); err != nil {
		fail("close server: %v", err)
	}
	fmt.Printf("vchan: server sent pong and %d bytes\n", PayloadSize)

	cli, err := vchan.Dial(ctx, p, 0, 5001)
	if err != nil {
		fail("dial: %v", err)
	}
	r, w := cli.RingSizes()
	fmt.Printf("vchan: connected to dom0 port 5001 (rings %d/%d)\n", r, w)
	blob := make([]byte, BlobSize)
	if _, err := io.ReadFull(cli, blob); err != nil {
		fail("reading the blob: %v", err)
	}
	fmt.Printf("vchan: client got %d bytes sha256 %x\n", len(blob), sha256.Sum256(blob))
	if _, err := fmt.Fprintf(cli, "got %d bytes\n", len(blob)); err != nil {
		fail("answer: %v", err)
	}
	drain(ctx, cli)
	if err := cli.Close(); err != nil {
		fail("close client: %v", err)
	}
	grantCopy()
	fmt.Println("vchan: done")
}

// grantCopy checks GNTTABOP_copy through Xen: the netback's way of moving
// data, here between two local frames and from a page granted to dom0.
func grantCopy() {
	tbl, err := gnttab.Open()
	if err != nil {
		fail("%v", err)
	}
	mem, err := dma.System()
	if err != nil {
		fail("%v", err)
	}
	r, err := mem.Alloc(2 * dma.PageSize)
	if err != nil {
		fail("%v", err)
	}
	src, dst := r.Bytes[:dma.PageSize], r.Bytes[dma.PageSize:]
	for i := range src {
		src[i] = byte(i * 13)
	}
	op := gnttab.CopyOp{
		Src: gnttab.CopyPtr{Local: true, Frame: r.Frame(), Offset: 100},
		Dst: gnttab.CopyPtr{Local: true, Frame: r.Frame() + 1, Offset: 200},
		Len: 1000,
	}
	if err := tbl.Copy([]gnttab.CopyOp{op}); err != nil {
		fail("grant copy: %v", err)
	}
	if !bytes.Equal(dst[200:1200], src[100:1100]) || dst[199] != 0 || dst[1200] != 0 {
		fail("grant copy moved the wrong bytes")
	}
	// A ref far beyond dom0's table (64 frames of 512 by default) fails
	// on its own while the good op in the same batch is done.
	dst[200] = 0
	bad := gnttab.CopyOp{Src: gnttab.CopyPtr{Dom: 0, Ref: 0xfffff}, Dst: op.Dst, Len: 10}
	if err := tbl.Copy([]gnttab.CopyOp{op, bad}); err == nil {
		fail("grant copy from a ref dom0 cannot have succeeded")
	} else if dst[200] != src[100] {
		fail("the good op of a batch with a bad one was not done")
	} else {
		fmt.Printf("vchan: grant copy ok; a bad ref fails with %q\n", err)
	}
}

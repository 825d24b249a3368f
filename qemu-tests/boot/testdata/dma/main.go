// Command dma checks the kernel's DMA memory (/dev/unikgo/dma through
// kernel/dma): regions are page aligned, zeroed, disjoint, keep their
// contents while the Go heap churns, can be freed (once), and requests
// the kernel cannot meet fail with an error instead of eating the heap.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"

	"github.com/unikgo/unikgo/kernel/dma"
)

func fail(format string, args ...any) {
	fmt.Printf("dma: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	mem, err := dma.System()
	if err != nil {
		fail("%v", err)
	}
	var regs []*dma.Region
	for i, size := range []int{1, 4096, 5000, 64 << 10, 1 << 20} {
		r, err := mem.Alloc(size)
		if err != nil {
			fail("alloc %d: %v", size, err)
		}
		if r.Phys%dma.PageSize != 0 || len(r.Bytes) < size || len(r.Bytes)%dma.PageSize != 0 {
			fail("alloc %d: region at %#x of %d bytes", size, r.Phys, len(r.Bytes))
		}
		for j, b := range r.Bytes {
			if b != 0 {
				fail("alloc %d: byte %d is %#x, want zeroed memory", size, j, b)
			}
		}
		for _, o := range regs {
			if r.Phys < o.Phys+uint64(len(o.Bytes)) && o.Phys < r.Phys+uint64(len(r.Bytes)) {
				fail("regions at %#x and %#x overlap", r.Phys, o.Phys)
			}
		}
		for j := range r.Bytes {
			r.Bytes[j] = byte(i*7 + j)
		}
		regs = append(regs, r)
	}
	// Churn the heap: DMA frames must not be handed to Go as well.
	var keep [][]byte
	for i := 0; i < 64; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = 0xee
		}
		keep = append(keep, b)
		if len(keep) > 8 {
			keep = keep[1:]
		}
	}
	runtime.GC()
	for i, r := range regs {
		for j, b := range r.Bytes {
			if b != byte(i*7+j) {
				fail("region %d at %#x changed at byte %d: %#x", i, r.Phys, j, b)
			}
		}
	}
	if _, err := mem.Alloc(1 << 40); !errors.Is(err, syscall.EINVAL) {
		fail("alloc 1 TiB = %v, want EINVAL", err)
	}
	if _, err := mem.Alloc(200 << 20); !errors.Is(err, syscall.ENOMEM) {
		fail("alloc 200 MiB of 128 = %v, want ENOMEM", err)
	}
	last := regs[len(regs)-1]
	copyOf := *last
	if err := mem.Free(last); err != nil {
		fail("free: %v", err)
	}
	if err := mem.Free(&copyOf); !errors.Is(err, syscall.EINVAL) {
		fail("double free = %v, want EINVAL", err)
	}
	r, err := mem.Alloc(4096)
	if err != nil {
		fail("alloc after free: %v", err)
	}
	for j, b := range r.Bytes {
		if b != 0 {
			fail("reused memory not zeroed at byte %d", j)
		}
	}
	fmt.Println("dma: ok")
}

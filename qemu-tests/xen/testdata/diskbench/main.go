// Command diskbench measures a disk through package os alone, so that the
// same code runs as a unikgo image and as a Linux program in the baseline
// guest: sequential 1 MiB writes (then fsync) and reads, and random 4 KiB
// writes (then fsync) and reads. The disk is opened O_DIRECT so that
// Linux's page cache does not answer reads; unikgo has no cache to bypass.
// Times are the guest's own clock.
//
//	diskbench DEVICE [MiB] [ops]     (defaults: 64 MiB, 1024 random ops)
package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	_ "github.com/unikgo/unikgo/devices/disks"
)

func fail(format string, args ...any) {
	fmt.Printf("diskbench: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// aligned returns n bytes aligned to 4096, as O_DIRECT wants.
func aligned(n int) []byte {
	b := make([]byte, n+4096)
	off := (4096 - int(uintptr(unsafe.Pointer(&b[0]))%4096)) % 4096
	return b[off : off+n]
}

func report(name string, bytes int64, ops int, d time.Duration) {
	fmt.Printf("diskbench: %s %.2f MiB/s %.0f IOPS (%d ops in %v)\n", name,
		float64(bytes)/(1<<20)/d.Seconds(), float64(ops)/d.Seconds(), ops, d.Round(time.Millisecond))
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: diskbench DEVICE [MiB] [ops]")
	}
	mib, ops := 64, 1024
	if len(os.Args) > 2 {
		mib, _ = strconv.Atoi(os.Args[2])
	}
	if len(os.Args) > 3 {
		ops, _ = strconv.Atoi(os.Args[3])
	}
	f, err := os.OpenFile(os.Args[1], os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		fail("open %s: %v", os.Args[1], err)
	}
	big := aligned(1 << 20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	start := time.Now()
	for i := range mib {
		if _, err := f.WriteAt(big, int64(i)<<20); err != nil {
			fail("write: %v", err)
		}
	}
	if err := f.Sync(); err != nil {
		fail("fsync: %v", err)
	}
	report("seq-write-1M", int64(mib)<<20, mib, time.Since(start))
	start = time.Now()
	for i := range mib {
		if _, err := f.ReadAt(big, int64(i)<<20); err != nil {
			fail("read: %v", err)
		}
	}
	report("seq-read-1M", int64(mib)<<20, mib, time.Since(start))
	r := rand.New(rand.NewPCG(1, 2))
	small := big[:4096]
	blocks := int64(mib) << 20 / 4096
	start = time.Now()
	for range ops {
		if _, err := f.WriteAt(small, r.Int64N(blocks)*4096); err != nil {
			fail("random write: %v", err)
		}
	}
	if err := f.Sync(); err != nil {
		fail("fsync: %v", err)
	}
	report("rand-write-4k", int64(ops)*4096, ops, time.Since(start))
	start = time.Now()
	for range ops {
		if _, err := f.ReadAt(small, r.Int64N(blocks)*4096); err != nil {
			fail("random read: %v", err)
		}
	}
	report("rand-read-4k", int64(ops)*4096, ops, time.Since(start))
	fmt.Println("diskbench: done")
}

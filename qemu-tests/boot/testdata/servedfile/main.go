// Command servedfile checks served files end to end inside the unikernel:
// two RAM disks served by blockdev/devfile through the kernel's
// /dev/unikgo/serve, used through nothing but package os, as a program
// would use /dev/vda. Concurrent goroutines read and write while others
// run, so forwarded calls block only their own thread.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"

	"github.com/unikgo/unikgo/blockdev/devfile"
	"github.com/unikgo/unikgo/blockdev/memdisk"
)

func fail(format string, args ...any) {
	fmt.Printf("servedfile: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	rw, err := memdisk.New(8<<20, 512, false)
	if err != nil {
		fail("%v", err)
	}
	ro, err := memdisk.New(1<<20, 4096, true)
	if err != nil {
		fail("%v", err)
	}
	copy(ro.Bytes(), "read-only content")
	disks := []devfile.Disk{{Path: "/dev/ram0", Dev: rw}, {Path: "/dev/ram1", Dev: ro}}
	if err := devfile.Serve(context.Background(), disks, func(err error) { fail("%v", err) }); err != nil {
		fail("serve: %v", err)
	}

	fi, err := os.Stat("/dev/ram0")
	if err != nil || fi.Mode()&os.ModeDevice == 0 {
		fail("stat /dev/ram0: %v, %v", fi, err)
	}
	f, err := os.OpenFile("/dev/ram0", os.O_RDWR, 0)
	if err != nil {
		fail("open /dev/ram0: %v", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || size != 8<<20 {
		fail("seek end = %d, %v", size, err)
	}
	// 8 goroutines write and verify their own stripes concurrently.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			want := make([]byte, 1<<20)
			for i := range want {
				want[i] = byte(r.Uint32())
			}
			off := int64(g) << 20
			if _, err := f.WriteAt(want, off); err != nil {
				errs <- fmt.Errorf("stripe %d: write: %v", g, err)
				return
			}
			got := make([]byte, len(want))
			if _, err := f.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
				errs <- fmt.Errorf("stripe %d: read back: %v (equal %v)", g, err, bytes.Equal(got, want))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fail("%v", err)
	}
	if err := f.Sync(); err != nil || rw.Flushes() != 1 {
		fail("sync: %v, %d flushes", err, rw.Flushes())
	}
	if n, err := f.ReadAt(make([]byte, 10), size); n != 0 || err != io.EOF {
		fail("read at the end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := f.WriteAt([]byte("x"), size); !errors.Is(err, syscall.ENOSPC) {
		fail("write at the end: %v, want ENOSPC", err)
	}
	if err := f.Close(); err != nil {
		fail("close: %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); err == nil {
		fail("read after close succeeded")
	}
	fmt.Println("servedfile: 8 MiB written and verified by 8 goroutines, flushed")

	if _, err := os.OpenFile("/dev/ram1", os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		fail("open of the read-only disk for writing: %v, want EROFS", err)
	}
	r, err := os.Open("/dev/ram1")
	if err != nil {
		fail("open /dev/ram1: %v", err)
	}
	b := make([]byte, 17)
	if _, err := io.ReadFull(r, b); err != nil || string(b) != "read-only content" {
		fail("read /dev/ram1: %q, %v", b, err)
	}
	if _, err := r.Write([]byte("x")); err == nil {
		fail("write to a read-only file succeeded")
	}
	r.Close()
	if _, err := os.Open("/dev/ram2"); !errors.Is(err, os.ErrNotExist) {
		fail("open of an unserved path: %v, want not-exist", err)
	}
	fmt.Println("servedfile: read-only disk refuses writes (EROFS); ok")
}

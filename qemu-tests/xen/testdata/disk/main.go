// Command disk writes seeded random data to its first disk through
// package os alone, flushes, reads it back and verifies it, and prints the
// data's SHA-256 so that dom0 can check the backing file after the domain
// is gone. A second, read-only disk must refuse writes.
//
//	disk [MiB] [seed]     (defaults: 64 MiB, seed 1)
package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"time"

	_ "github.com/unikgo/unikgo/devices/disks"
)

const chunk = 1 << 20

func fail(format string, args ...any) {
	fmt.Printf("disk: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	mib, seed := 64, uint64(1)
	if len(os.Args) > 1 {
		mib, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		seed, _ = strconv.ParseUint(os.Args[2], 10, 64)
	}
	dev := os.Getenv("DISK")
	if dev == "" {
		dev = "/dev/xvda"
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		fail("open %s: %v", dev, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || size < int64(mib)*chunk {
		fail("%s: size %d (%v), need %d MiB", dev, size, err, mib)
	}
	fmt.Printf("disk: %s is %d bytes\n", dev, size)

	data := func(i int, b []byte) {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		for j := 0; j < len(b); j += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
	}
	h := sha256.New()
	buf := make([]byte, chunk)
	start := time.Now()
	for i := range mib {
		data(i, buf)
		h.Write(buf)
		if _, err := f.WriteAt(buf, int64(i)*chunk); err != nil {
			fail("write MiB %d: %v", i, err)
		}
	}
	if err := f.Sync(); err != nil {
		fail("fsync: %v", err)
	}
	wrote := time.Since(start)
	want := make([]byte, chunk)
	start = time.Now()
	for i := range mib {
		if _, err := f.ReadAt(buf, int64(i)*chunk); err != nil {
			fail("read MiB %d: %v", i, err)
		}
		data(i, want)
		if !bytes.Equal(buf, want) {
			fail("MiB %d reads back different", i)
		}
	}
	read := time.Since(start)
	if n, err := f.ReadAt(buf[:512], size); n != 0 || err != io.EOF {
		fail("read at the end of the disk = %d, %v; want 0, EOF", n, err)
	}
	if err := f.Close(); err != nil {
		fail("close: %v", err)
	}
	fmt.Printf("disk: %d MiB written, flushed and verified (write %.1f MiB/s, read %.1f MiB/s guest time)\n",
		mib, float64(mib)/wrote.Seconds(), float64(mib)/read.Seconds())
	fmt.Printf("disk: sha256 %x\n", h.Sum(nil))

	if ro := os.Getenv("RODISK"); ro != "" {
		if _, err := os.OpenFile(ro, os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
			fail("open %s for writing: %v, want EROFS", ro, err)
		}
		r, err := os.Open(ro)
		if err != nil {
			fail("open %s: %v", ro, err)
		}
		b := make([]byte, 16)
		if _, err := io.ReadFull(r, b); err != nil || string(b) != "read-only disk!\n" {
			fail("read %s: %q, %v", ro, b, err)
		}
		if _, err := r.WriteAt(b, 0); err == nil {
			fail("write to %s opened read-only succeeded", ro)
		}
		r.Close()
		fmt.Printf("disk: %s refuses writes\n", ro)
	}
	fmt.Println("disk: ok")
}

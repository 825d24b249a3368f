// Command realruntime hands the vDSO image to the real Go runtime's parser
// (runtime.vdsoauxv, reached with -ldflags=-checklinkname=0) and checks
// that the runtime's own nanotime and walltime then run through it. Built
// and run by TestRealRuntime.
package main

import (
	"fmt"
	"math/bits"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/vdso"
)

//go:linkname vdsoauxv runtime.vdsoauxv
func vdsoauxv(tag, val uintptr)

//go:linkname vdsoClockgettimeSym runtime.vdsoClockgettimeSym
var vdsoClockgettimeSym uintptr

//go:linkname vdsoGettimeofdaySym runtime.vdsoGettimeofdaySym
var vdsoGettimeofdaySym uintptr

//go:linkname nanotime runtime.nanotime
func nanotime() int64

func rdtsc() uint64

func hostMono() uint64 {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	return uint64(ts.Nano())
}

func fail(f string, a ...any) {
	fmt.Printf("FAIL: "+f+"\n", a...)
	os.Exit(1)
}

func main() {
	img := vdso.Build()
	vdsoauxv(33, img)
	if vdsoClockgettimeSym != vdso.ClockGettimeAddr() || vdsoGettimeofdaySym != vdso.GettimeofdayAddr() {
		fail("runtime resolved %#x %#x, functions at %#x %#x", vdsoClockgettimeSym, vdsoGettimeofdaySym,
			vdso.ClockGettimeAddr(), vdso.GettimeofdayAddr())
	}

	// Disabled: the runtime's clock is the host's, by system call.
	if d := time.Now().Sub(time.Unix(0, hostReal())); d < -time.Second || d > time.Second {
		fail("disabled: time.Now is %v off the host's", d)
	}

	// Calibrate, then a TSC clock 10 s ahead of the host's monotonic
	// clock and one day ahead of its realtime.
	t0, h0 := rdtsc(), hostMono()
	time.Sleep(100 * time.Millisecond)
	t1, h1 := rdtsc(), hostMono()
	hz := (t1 - t0) * 1e9 / (h1 - h0)
	mult, _ := bits.Div64(1e9>>32, 1e9<<32, hz)
	mono := hostMono() + 10e9
	q, _ := bits.Div64(mono>>32, mono<<32, mult)
	base := rdtsc() - q
	const day = 24 * time.Hour
	vdso.SetTSC(base, mult, uint64(hostReal())+uint64(day)-mono)

	if d := time.Now().Sub(time.Unix(0, hostReal())); d < day-time.Second || d > day+time.Second {
		fail("TSC mode: time.Now is %v off the host's, want a day", d)
	}
	if d := nanotime() - int64(hostMono()); d < 9e9 || d > 11e9 {
		fail("TSC mode: runtime.nanotime is %v off the host's, want 10s", time.Duration(d))
	}
	var tv syscall.Timeval
	syscall.Gettimeofday(&tv) // through vdsoGettimeofdaySym
	if d := time.Duration(tv.Nano() - hostReal()); d < day-time.Second || d > day+time.Second {
		fail("TSC mode: syscall.Gettimeofday is %v off the host's, want a day", d)
	}

	// The runtime works on it: timers, sleeps, goroutines, GC.
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var keep [][]byte
			for j := 0; j < 50; j++ {
				keep = append(keep, make([]byte, 64<<10))
				time.Sleep(time.Millisecond)
				if len(keep) > 10 {
					keep = keep[1:]
				}
			}
		}()
	}
	wg.Wait()
	timer := time.NewTimer(50 * time.Millisecond)
	<-timer.C
	if el := time.Since(start); el < 50*time.Millisecond || el > 5*time.Second {
		fail("elapsed %v", el)
	}

	// Disabled again: back to the host's.
	vdso.Disable()
	if d := time.Now().Sub(time.Unix(0, hostReal())); d < -time.Second || d > time.Second {
		fail("disabled again: time.Now is %v off the host's", d)
	}
	fmt.Println("OK")
}

func hostReal() int64 {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 0, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

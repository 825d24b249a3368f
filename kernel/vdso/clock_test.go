//go:build amd64 && linux

package vdso

import (
	"math/bits"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var vdsoClocks = []int32{unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_MONOTONIC_RAW, unix.CLOCK_REALTIME_COARSE, unix.CLOCK_MONOTONIC_COARSE, unix.CLOCK_BOOTTIME}

func isRealtime(id int32) bool { return id == unix.CLOCK_REALTIME || id == unix.CLOCK_REALTIME_COARSE }

// vdsoGettime calls __vdso_clock_gettime and returns the time in ns.
func vdsoGettime(t *testing.T, id int32) uint64 {
	t.Helper()
	var ts [2]int64
	if r := ClockGettime(id, &ts); r != 0 {
		t.Fatalf("__vdso_clock_gettime(%d) = %d", id, r)
	}
	if ts[1] < 0 || ts[1] >= 1e9 || ts[0] < 0 {
		t.Fatalf("__vdso_clock_gettime(%d): timespec %v", id, ts)
	}
	return uint64(ts[0])*1e9 + uint64(ts[1])
}

// hostGettime asks the host kernel.
func hostGettime(t *testing.T, id int32) uint64 {
	t.Helper()
	var ts syscall.Timespec
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, uintptr(id), uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		t.Fatalf("clock_gettime(%d): %v", id, e)
	}
	return uint64(ts.Sec)*1e9 + uint64(ts.Nsec)
}

// tscRef is the kernel's tscNanotime.
func tscRef(tsc, base, mult uint64) uint64 {
	hi, lo := bits.Mul64(tsc-base, mult)
	return hi<<32 | lo>>32
}

// calibrate measures the TSC against the host's monotonic clock and
// returns the kernel's 32.32 ns-per-tick multiplier. Each sample is a TSC
// read between two host clock reads close together (a preemption between
// them would skew the rate).
func calibrate(t *testing.T) uint64 {
	sample := func() (tsc, ns uint64) {
		for i := 0; ; i++ {
			a := hostGettime(t, unix.CLOCK_MONOTONIC)
			tsc = rdtsc()
			b := hostGettime(t, unix.CLOCK_MONOTONIC)
			if b-a < 20e3 || i > 1000 {
				return tsc, a + (b-a)/2
			}
		}
	}
	t0, h0 := sample()
	time.Sleep(100 * time.Millisecond)
	t1, h1 := sample()
	hz := (t1 - t0) * 1e9 / (h1 - h0)
	if hz == 0 {
		t.Skip("no TSC")
	}
	mult, _ := bits.Div64(1e9>>32, 1e9<<32, hz)
	t.Logf("TSC %d Hz, mult %#x", hz, mult)
	return mult
}

func TestTSC(t *testing.T) {
	defer Disable()
	mult := calibrate(t)
	base := rdtsc() - 5e9 // some seconds of "uptime"
	wall := uint64(time.Now().UnixNano()) - tscRef(rdtsc(), base, mult)
	SetTSC(base, mult, wall)
	if Mode() != ModeTSC {
		t.Fatalf("mode %d", Mode())
	}

	var prev [8]uint64
	for i := 0; i < 200000; i++ {
		id := vdsoClocks[i%len(vdsoClocks)]
		t0 := rdtsc()
		ns := vdsoGettime(t, id)
		t1 := rdtsc()
		lo, hi := tscRef(t0, base, mult), tscRef(t1, base, mult)
		if isRealtime(id) {
			lo, hi = lo+wall, hi+wall
		}
		if ns < lo || ns > hi {
			t.Fatalf("clock %d: %d not in [%d, %d] computed from the TSC before and after", id, ns, lo, hi)
		}
		if ns < prev[id] {
			t.Fatalf("clock %d went back: %d after %d", id, ns, prev[id])
		}
		prev[id] = ns
	}

	// Against the host's clocks: realtime within 50 ms, the monotonic
	// rate within 1%.
	if d := int64(vdsoGettime(t, unix.CLOCK_REALTIME)) - time.Now().UnixNano(); d > 50e6 || d < -50e6 {
		t.Errorf("realtime is %v off the host's", time.Duration(d))
	}
	h0a, m0, h0b := hostGettime(t, unix.CLOCK_MONOTONIC), vdsoGettime(t, unix.CLOCK_MONOTONIC), hostGettime(t, unix.CLOCK_MONOTONIC)
	time.Sleep(300 * time.Millisecond)
	h1a, m1, h1b := hostGettime(t, unix.CLOCK_MONOTONIC), vdsoGettime(t, unix.CLOCK_MONOTONIC), hostGettime(t, unix.CLOCK_MONOTONIC)
	if lo, hi := float64(h1a-h0b)*0.99, float64(h1b-h0a)*1.01; float64(m1-m0) < lo || float64(m1-m0) > hi {
		t.Errorf("monotonic ran %v while the host's ran %v to %v", time.Duration(m1-m0), time.Duration(h1a-h0b), time.Duration(h1b-h0a))
	}

	// The kernel-side readers agree.
	t0 := rdtsc()
	mono, ok1 := Nanotime()
	real, ok2 := Realtime()
	t1 := rdtsc()
	if !ok1 || !ok2 || mono < tscRef(t0, base, mult) || mono > real-wall || real-wall > tscRef(t1, base, mult) {
		t.Errorf("Nanotime %d %v, Realtime %d %v; TSC bounds [%d, %d]", mono, ok1, real, ok2, tscRef(t0, base, mult), tscRef(t1, base, mult))
	}

	// A new wall base moves realtime only.
	SetWallBase(wall + 3600e9)
	if d := int64(vdsoGettime(t, unix.CLOCK_REALTIME)) - time.Now().UnixNano(); d < 3600e9-50e6 || d > 3600e9+50e6 {
		t.Errorf("realtime after SetWallBase(+1h) is %v off the host's", time.Duration(d))
	}
}

func TestGettimeofday(t *testing.T) {
	defer Disable()
	mult := calibrate(t)
	base := rdtsc()
	wall := uint64(time.Now().UnixNano())
	SetTSC(base, mult, wall)
	for i := 0; i < 1000; i++ {
		tz := [2]int32{-1, -1}
		var tv [2]int64
		t0 := rdtsc()
		if r := callGettimeofday(unsafe.Pointer(&tv), unsafe.Pointer(&tz)); r != 0 {
			t.Fatalf("__vdso_gettimeofday = %d", r)
		}
		t1 := rdtsc()
		lo, hi := wall+tscRef(t0, base, mult), wall+tscRef(t1, base, mult)
		got := uint64(tv[0])*1e9 + uint64(tv[1])*1e3
		if tv[1] < 0 || tv[1] >= 1e6 || got < lo/1000*1000 || got > hi {
			t.Fatalf("timeval %v not in [%d, %d]", tv, lo, hi)
		}
		if tz != [2]int32{} {
			t.Fatalf("timezone %v", tz)
		}
	}
	if r := callGettimeofday(nil, nil); r != 0 {
		t.Errorf("__vdso_gettimeofday(NULL, NULL) = %d", r)
	}
	// Disabled: the system call.
	Disable()
	var tv [2]int64
	if r := callGettimeofday(unsafe.Pointer(&tv), nil); r != 0 {
		t.Fatalf("__vdso_gettimeofday by system call = %d", r)
	}
	if d := tv[0]*1e9 + tv[1]*1e3 - time.Now().UnixNano(); d > 0 || d < -1e9 {
		t.Errorf("gettimeofday by system call is %v off", time.Duration(d))
	}
	readOnly := unsafe.Pointer(unsafe.StringData("a read-only timeval"))
	if r := callGettimeofday(readOnly, nil); r != -int64(syscall.EFAULT) {
		t.Errorf("__vdso_gettimeofday(read-only) by system call = %d, want -EFAULT", r)
	}
}

// Clocks the vDSO does not compute, and every clock while the block is
// disabled, are the host kernel's.
func TestFallback(t *testing.T) {
	defer Disable()
	runtime.LockOSThread() // the thread CPU-time clock
	defer runtime.UnlockOSThread()
	check := func(id int32) {
		t.Helper()
		h0 := hostGettime(t, id)
		ns := vdsoGettime(t, id)
		h1 := hostGettime(t, id)
		if ns < h0 || ns > h1 {
			t.Errorf("clock %d: %d not between the host's %d and %d", id, ns, h0, h1)
		}
	}
	Disable()
	for _, id := range vdsoClocks {
		check(id)
	}
	// A TSC clock two days off the host's makes a fallback visible.
	mult := calibrate(t)
	SetTSC(rdtsc(), mult, 2*86400e9)
	if ns := vdsoGettime(t, unix.CLOCK_REALTIME); ns > 3*86400e9 {
		t.Fatalf("realtime %d: not the vDSO's", ns)
	}
	check(unix.CLOCK_PROCESS_CPUTIME_ID)
	check(unix.CLOCK_THREAD_CPUTIME_ID)
	check(unix.CLOCK_TAI)
	// A CPU-time clock id for this process (negative: ~pid<<3 | CPUCLOCK_SCHED).
	if ns := vdsoGettime(t, ^0<<3|2); ns == 0 {
		t.Errorf("the process's CPU clock by id is 0")
	}
	var ts [2]int64
	for _, id := range []int32{8 + 100, 1 << 20, 16} {
		if r := ClockGettime(id, &ts); r != -int64(syscall.EINVAL) {
			t.Errorf("clock %d: %d, want -EINVAL", id, r)
		}
	}
	if r := ClockGettime(unix.CLOCK_MONOTONIC, nil); r != -int64(syscall.EFAULT) {
		t.Errorf("NULL timespec: %d, want -EFAULT", r)
	}
	Disable()
	if _, ok := Nanotime(); ok {
		t.Errorf("Nanotime ok while disabled")
	}
}

// pvInfo is struct vcpu_time_info.
type pvInfo struct {
	version uint32
	_       uint32
	tsc     uint64
	system  uint64
	mul     uint32
	shift   int8
	flags   uint8
	_       [2]byte
}

var fakePV pvInfo

// pvRef is xenpv.SystemTime's computation.
func pvRef(p *pvInfo, tsc uint64) uint64 {
	d := tsc - p.tsc
	if int64(d) < 0 {
		d = 0
	}
	if p.shift >= 0 {
		d <<= uint(p.shift)
	} else {
		d >>= uint(-p.shift)
	}
	hi, lo := bits.Mul64(d, uint64(p.mul))
	return p.system + (hi<<32 | lo>>32)
}

// pvStore updates the time info as Xen does. Nosplit and not inlined, so
// that it is not preempted with the version odd.
//
//go:nosplit
//go:noinline
func pvStore(p *pvInfo, stamp, system uint64, mul uint32, shift int8) {
	atomic.AddUint32(&p.version, 1)
	atomic.StoreUint64(&p.tsc, stamp)
	atomic.StoreUint64(&p.system, system)
	atomic.StoreUint32(&p.mul, mul)
	*(*uint32)(unsafe.Pointer(&p.shift)) = uint32(uint8(shift)) // shift, flags, pad
	atomic.AddUint32(&p.version, 1)
}

func TestXen(t *testing.T) {
	defer Disable()
	if unsafe.Offsetof(fakePV.tsc) != pvTSC || unsafe.Offsetof(fakePV.system) != pvSystem ||
		unsafe.Offsetof(fakePV.mul) != pvMul || unsafe.Offsetof(fakePV.shift) != pvShift {
		t.Fatal("pvInfo layout")
	}
	p := &fakePV
	const sys0 = 7_000_000_000_000
	const sysOff = sys0 - 1_000_000_000
	wall := uint64(1.7e18)
	for _, c := range []struct {
		mul   uint32
		shift int8
	}{{0x80000000, 1}, {0xc0000000, -1}, {0x9abcdef0, 0}, {0xffffffff, -3}, {0x40000000, 3}} {
		pvStore(p, rdtsc(), sys0, c.mul, c.shift)
		XenLast().Store(0)
		SetXen(uintptr(unsafe.Pointer(p)), sysOff, wall, 0)
		if Mode() != ModeXen {
			t.Fatalf("mode %d", Mode())
		}
		prev := uint64(0)
		for i := 0; i < 20000; i++ {
			id := vdsoClocks[i%len(vdsoClocks)]
			t0 := rdtsc()
			ns := vdsoGettime(t, id)
			t1 := rdtsc()
			lo, hi := pvRef(p, t0)-sysOff, pvRef(p, t1)-sysOff
			if isRealtime(id) {
				ns -= wall
			}
			if ns < lo || ns > hi {
				t.Fatalf("mul %#x shift %d, clock %d: mono %d not in [%d, %d]", c.mul, c.shift, id, ns, lo, hi)
			}
			if ns < prev {
				t.Fatalf("clock %d went back", id)
			}
			prev = ns
			if l := XenLast().Load(); l != ns {
				t.Fatalf("XenLast %d after handing out %d", l, ns)
			}
		}
	}

	// A stamp ahead of the TSC: the time is the stamp's.
	pvStore(p, rdtsc()+1e12, sys0+5e9, 0x80000000, 1)
	if ns, want := vdsoGettime(t, unix.CLOCK_MONOTONIC), uint64(sys0+5e9-sysOff); ns != want {
		t.Errorf("stamp ahead: %d, want %d", ns, want)
	}

	// The clamp: never below XenLast, which only grows.
	pvStore(p, rdtsc(), sys0, 0x80000000, 1)
	XenLast().Store(sys0) // far ahead of sys0 - sysOff
	if ns := vdsoGettime(t, unix.CLOCK_MONOTONIC); ns != sys0 {
		t.Errorf("clamped: %d, want the last %d", ns, uint64(sys0))
	}
	if ns := vdsoGettime(t, unix.CLOCK_REALTIME); ns != wall+sys0 {
		t.Errorf("clamped realtime: %d, want %d", ns, wall+sys0)
	}
	if l := XenLast().Load(); l != sys0 {
		t.Errorf("XenLast moved to %d", l)
	}
	// SetXen raises, never lowers, XenLast.
	SetXen(uintptr(unsafe.Pointer(p)), sysOff, wall, 5)
	if l := XenLast().Load(); l != sys0 {
		t.Errorf("SetXen lowered XenLast to %d", l)
	}
	SetXen(uintptr(unsafe.Pointer(p)), sysOff, wall, sys0+1)
	if l := XenLast().Load(); l != sys0+1 {
		t.Errorf("SetXen did not raise XenLast: %d", l)
	}
}

// pvRestamp writes garbage inside an odd version, then a state in which
// system time is s0 + (tsc - t0) at 1 ns per tick.
//
//go:nosplit
//go:noinline
func pvRestamp(p *pvInfo, t0, s0 uint64) {
	atomic.AddUint32(&p.version, 1)
	atomic.StoreUint64(&p.system, 1<<62)
	atomic.StoreUint32(&p.mul, 0xffffffff)
	now := rdtsc()
	atomic.StoreUint64(&p.tsc, now)
	atomic.StoreUint64(&p.system, s0+now-t0)
	atomic.StoreUint32(&p.mul, 0x80000000)
	atomic.AddUint32(&p.version, 1)
}

// callAsync calls __vdso_clock_gettime on another goroutine.
func callAsync(id int32) chan [2]int64 {
	ch := make(chan [2]int64, 1)
	go func() {
		var ts [2]int64
		ClockGettime(id, &ts)
		ch <- ts
	}()
	return ch
}

func expectBlocked(t *testing.T, ch chan [2]int64, what string) {
	t.Helper()
	select {
	case ts := <-ch:
		t.Fatalf("returned %v %s", ts, what)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestVersionDance(t *testing.T) {
	defer Disable()
	// The reader left spinning here cannot be preempted: no GC meanwhile.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0))))
	p := &fakePV
	const sys0, sysOff = 7e12, 6e12
	pvStore(p, rdtsc(), sys0, 0x80000000, 1)
	XenLast().Store(0)
	SetXen(uintptr(unsafe.Pointer(p)), sysOff, 0, 0)

	// An odd vcpu_time_info version: the reader waits for the update.
	atomic.AddUint32(&p.version, 1)
	ch := callAsync(unix.CLOCK_MONOTONIC)
	expectBlocked(t, ch, "while the time info's version was odd")
	atomic.StoreUint64(&p.system, 9e12)
	atomic.AddUint32(&p.version, 1)
	ts := <-ch
	t1 := rdtsc()
	if ns := uint64(ts[0]*1e9 + ts[1]); ns < 9e12-sysOff || ns > pvRef(p, t1)-sysOff {
		t.Errorf("after the update: %d, want in [%d, %d]", ns, uint64(9e12-sysOff), pvRef(p, t1)-sysOff)
	}

	// The data block's own sequence lock.
	beginWrite()
	ch = callAsync(unix.CLOCK_MONOTONIC)
	expectBlocked(t, ch, "while the data block was being written")
	atomic.StoreUint64(&clock.xenSysOff, sysOff-1e12)
	endWrite()
	ts = <-ch
	if ns := uint64(ts[0]*1e9 + ts[1]); ns < 9e12-sysOff+1e12 || ns > 9e12-sysOff+2e12 {
		t.Errorf("after the data block's update: %d", ns)
	}
}

// Readers never see a torn update of either the time info or the data
// block: writers rewrite them with values that leave the time unchanged
// (or garbage inside an odd version) while readers check every result.
func TestTornReads(t *testing.T) {
	defer Disable()
	// A reader spinning in the vDSO cannot be preempted: no GC while a
	// writer may be stopped mid-update.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0))))
	deadline := time.Now().Add(300 * time.Millisecond)

	// Xen: every state is system = s0 + (tsc - t0) at 1 ns per tick.
	p := &fakePV
	t0 := rdtsc()
	const s0, sysOff = 1e12, 1e12
	pvStore(p, t0, s0, 0x80000000, 1)
	XenLast().Store(0)
	SetXen(uintptr(unsafe.Pointer(p)), sysOff, 0, 0)
	f := func(tsc uint64) uint64 { return s0 + tsc - t0 - sysOff }
	var wg sync.WaitGroup
	var stop atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			pvRestamp(p, t0, s0)
		}
	}()
	n := 0
	for ; time.Now().Before(deadline); n++ {
		a := rdtsc()
		ns := vdsoGettime(t, unix.CLOCK_MONOTONIC)
		b := rdtsc()
		if ns < f(a) || ns > f(b) {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("Xen read %d: %d not in [%d, %d]", n, ns, f(a), f(b))
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d Xen reads under a writer", n)

	// TSC: SetTSC moves the base back by k*D ticks and the wall base back
	// by k*D ns (at 1 ns per tick): realtime does not change.
	const D = 1e12
	base0 := rdtsc()
	wall0 := uint64(1e18)
	SetTSC(base0, 1<<32, wall0)
	stop.Store(false)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := uint64(1); !stop.Load(); k++ {
			SetTSC(base0-k*D, 1<<32, wall0-k*D)
		}
	}()
	deadline = time.Now().Add(300 * time.Millisecond)
	n = 0
	for ; time.Now().Before(deadline); n++ {
		a := rdtsc()
		ns := vdsoGettime(t, unix.CLOCK_REALTIME)
		b := rdtsc()
		if ns < wall0+a-base0 || ns > wall0+b-base0 {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("TSC read %d: %d not in [%d, %d]", n, ns, wall0+a-base0, wall0+b-base0)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d TSC reads under a writer", n)
}

func BenchmarkVDSO(b *testing.B) {
	defer Disable()
	SetTSC(rdtsc(), 1<<32, 0)
	var ts [2]int64
	for b.Loop() {
		ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	}
}

func BenchmarkSyscall(b *testing.B) {
	Disable()
	var ts [2]int64
	for b.Loop() {
		ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	}
}

package kernel

import (
	"math/bits"

	"github.com/unikgo/unikgo/kernel/vdso"
	"github.com/unikgo/unikgo/x86"
	"github.com/unikgo/unikgo/xenpv"
)

// Time: a monotonic clock from the TSC, calibrated at boot by the PIT, wall
// time from the CMOS RTC read once, and a one-shot local APIC timer for
// deadlines and time slices. On Xen the clock is Xen's system time instead
// (vcpu_time_info, the pvclock protocol), so that it agrees with the
// hypervisor's timers and survives TSC rate changes across migration; the
// wall clock is Xen's.

var (
	tscHz       uint64
	tscBase     uint64
	tscMult     uint64 // ns per tick, 32.32 fixed point
	wallBaseNS  uint64 // realtime at tscBase
	apicBase    uintptr
	apicHz      uint64
	timerVector = uint64(0x20)
)

const spuriousVector = 0xff

func nanotime() uint64 {
	if xenClock {
		return xenNanotime()
	}
	return tscNanotime()
}

// Xen system time, offset so that it continues the TSC clock used before
// the switch (boot time keeps counting from the PVH entry).
var (
	xenClock  bool
	xenSysOff uint64
)

// useXenClock switches nanotime to Xen system time.
func useXenClock() {
	now := tscNanotime()
	xenSysOff = xenpv.SystemTime() - now
	// The floor below which the clock never goes is shared with the
	// vDSO, so that the kernel's readings and the program's agree.
	vdso.XenLast().Store(now)
	xenClock = true
}

// xenNanotime is Xen system time since the switch, made monotonic: vCPUs'
// time infos are stamped independently and may disagree by a little, as
// Linux's pvclock notes, so a reading never goes below the last one.
func xenNanotime() uint64 {
	t := xenpv.SystemTime() - xenSysOff
	for {
		floor := vdso.XenLast()
		last := floor.Load()
		if t <= last {
			return last
		}
		if floor.CompareAndSwap(last, t) {
			return t
		}
	}
}

func tscNanotime() uint64 {
	d := x86.RDTSC() - tscBase
	hi, lo := bits.Mul64(d, tscMult)
	return hi<<32 | lo>>32
}

func realtimeOffset() uint64 { return wallBaseNS }

// Calibration windows. They are most of the kernel's boot time, so they
// are as short as their resolution allows: the PIT edge is polled through
// port I/O (about a microsecond a poll), 200 ppm of 5 ms; the LAPIC is
// read against the TSC, once known, to a tick.
const (
	pitWindowHz  = 200 // 5 ms
	apicWindowHz = 500 // 2 ms
)

// pitTicks runs PIT channel 2 (gated through port 0x61, 1193182 Hz) in
// mode 0 for count ticks and returns the TSC ticks that passed between
// the count's load (when the PIT starts) and its output's rise, and how
// many TSC ticks of that are uncertain: each moment is known only between
// two TSC reads, around the port write that loads the count and around
// the polls before and at the rise. Under an emulator on a loaded host
// the vCPU can be descheduled between such reads for many milliseconds.
func pitTicks(count uint16) (ticks, uncertain uint64) {
	g := x86.InB(0x61)
	x86.OutB(0x61, g&^0x02|0x01)
	x86.OutB(0x43, 0xb0) // channel 2, lobyte/hibyte, mode 0
	x86.OutB(0x42, uint8(count))
	a := x86.RDTSC()
	x86.OutB(0x42, uint8(count>>8)) // the count loads: the PIT starts
	b := x86.RDTSC()
	prev := b // the rise comes after this, or after a later poll that found it low
	for i := 0; i < 1<<28; i++ {
		t := x86.RDTSC()
		if x86.InB(0x61)&0x20 != 0 {
			e := x86.RDTSC()
			return (prev+e)/2 - (a+b)/2, (b - a) + (e - prev)
		}
		prev = t
	}
	return 0, ^uint64(0)
}

// pitWarmCount is a warm-up window's PIT count (~50 us), run before the
// measured one: under an emulator the first run of the measuring code is
// translated, and the time that takes would count as TSC ticks (under
// QEMU's TCG the TSC's rate came out 3-6% high, so the clock ran slow;
// TestClock).
const pitWarmCount = 64

// calibrationTries bounds the windows measured until one's ends are known
// to 1/calibrationSlop of its length (0.5%); if none is, the one whose
// ends are known best counts.
const (
	calibrationTries = 32
	calibrationSlop  = 200
)

// bestWindow runs measure, which times one calibration window and returns
// the rate it gives, how uncertain the window's ends are and its length
// (both in TSC ticks), until a window's ends are known well enough, and
// returns the rate of the best one.
func bestWindow(measure func() (rate, slop, length uint64)) uint64 {
	best, rate := ^uint64(0), uint64(0)
	for range calibrationTries {
		r, slop, length := measure()
		if slop < best {
			best, rate = slop, r
		}
		if slop < length/calibrationSlop {
			break
		}
	}
	return rate
}

func calibrateTSC(xenBase uint32) {
	if xenBase != 0 {
		// Xen leaf base+3, sub-leaf 0: ECX = guest TSC frequency in kHz.
		if _, _, khz, _ := x86.CPUID(xenBase+3, 0); khz != 0 {
			tscHz = uint64(khz) * 1000
		}
	}
	if tscHz == 0 {
		pitTicks(pitWarmCount)
		tscHz = bestWindow(func() (uint64, uint64, uint64) {
			n, slop := pitTicks(1193182 / pitWindowHz)
			return n * pitWindowHz, slop, n
		})
	}
	if tscHz == 0 {
		tscHz = 1e9
	}
	tscMult, _ = bits.Div64(1e9>>32, 1e9<<32, tscHz) // 1e9 * 2^32 / tscHz
}

// Local APIC (xAPIC, memory-mapped; identity-mapped below 4 GiB).
const (
	lapicEOI     = 0xb0
	lapicSVR     = 0xf0
	lapicLVTT    = 0x320
	lapicTICR    = 0x380
	lapicTCCR    = 0x390
	lapicTDCR    = 0x3e0
	lapicLVTLINT = 0x350
)

// x2APIC mode (Intel SDM vol. 3, 11.12): the same registers as MSRs
// 0x800 + offset/16. Under a hypervisor each LAPIC access is an exit
// either way, but an MSR exit names its register and value, while an
// xAPIC access is a fault on the MMIO page whose instruction the
// hypervisor must fetch and decode: in the lab (Xen on QEMU TCG) that
// made each EOI and timer write cost ~200 us.
var x2apic bool

const (
	msrX2APICBase  = 0x800
	apicBaseEnable = 1 << 11
	apicBaseX2     = 1 << 10
	cpuid1X2APIC   = 1 << 21 // CPUID.1:ECX
)

func lapicW(off uintptr, v uint32) {
	if x2apic {
		x86.WRMSR(msrX2APICBase+uint32(off>>4), uint64(v))
		return
	}
	*(*uint32)(ptr(apicBase + off)) = v
}

func lapicR(off uintptr) uint32 {
	if x2apic {
		return uint32(x86.RDMSR(msrX2APICBase + uint32(off>>4)))
	}
	return *(*uint32)(ptr(apicBase + off))
}

// lapicIDValue is this CPU's APIC ID (xAPIC keeps it in the ID register's
// top byte; x2APIC gives all 32 bits).
func lapicIDValue() uint32 {
	if x2apic {
		return lapicR(lapicID)
	}
	return lapicR(lapicID) >> 24
}

// lapicInit enables the local APIC, in x2APIC mode when the CPU has it and
// useX2 is set, and calibrates its timer against the TSC.
func lapicInit(useX2 bool) {
	// Mask the legacy PICs: every interrupt we want comes through the LAPIC.
	x86.OutB(0x21, 0xff)
	x86.OutB(0xa1, 0xff)
	b := x86.RDMSR(msrAPICBase)
	apicBase = uintptr(b & 0xfffff000)
	if _, _, c, _ := x86.CPUID(1, 0); useX2 && c&cpuid1X2APIC != 0 {
		// Enable, then switch to x2APIC: xAPIC to x2APIC is the one
		// mode change allowed without disabling first (SDM 11.12.5).
		x86.WRMSR(msrAPICBase, b|apicBaseEnable)
		x86.WRMSR(msrAPICBase, b|apicBaseEnable|apicBaseX2)
		x2apic = true
	} else {
		x86.WRMSR(msrAPICBase, b|apicBaseEnable) // global enable
	}
	lapicW(lapicSVR, 0x100|spuriousVector)
	lapicW(lapicTDCR, 0x3) // divide by 16
	lapicW(lapicLVTT, 1<<16|uint32(timerVector))
	// Calibrate against the TSC.
	lapicW(lapicTICR, 0xffffffff)
	if xenBase != 0 {
		// From the write that starts the count. On Xen this leaves the
		// exits of the register accesses in the window, and the rate
		// comes out 29% high (8.05 MHz for the vLAPIC's 6.25 MHz), which
		// the Xen time slices and sleep slack were tuned with; a retry
		// of those is for another change.
		t0 := x86.RDTSC()
		for x86.RDTSC()-t0 < tscHz/apicWindowHz {
			x86.Pause()
		}
		apicHz = uint64(0xffffffff-lapicR(lapicTCCR)) * apicWindowHz
	} else {
		// Between two reads of the count, each at a TSC moment known
		// to within its own two reads. Reading from the write instead
		// counted the time QEMU took to translate the next instructions
		// (the rate came out 3% high), and on a loaded host any time the
		// vCPU was descheduled there: 0.5-0.9 GHz was measured for
		// QEMU's 62.5 MHz, so every timer came ten times late.
		lapicSample()
		apicHz = bestWindow(func() (uint64, uint64, uint64) {
			c0, t0, w0 := lapicSample()
			for x86.RDTSC()-t0 < tscHz/apicWindowHz {
				x86.Pause()
			}
			c1, t1, w1 := lapicSample()
			return uint64(c0-c1) * tscHz / max(t1-t0, 1), w0 + w1, t1 - t0
		})
	}
	lapicW(lapicTICR, 0)
	if apicHz == 0 {
		apicHz = 1e9 / 16
	}
	lapicW(lapicLVTT, uint32(timerVector)) // one-shot, unmasked
	if verbose {
		kprint("unikgo: lapic: ")
		if x2apic {
			kprint("x2APIC")
		} else {
			kprint("xAPIC")
		}
		kprint(" mode, timer ")
		kprintDec(apicHz)
		kprint(" Hz, TSC ")
		kprintDec(tscHz)
		kprint(" Hz\n")
	}
}

// lapicSample reads the LAPIC timer's current count and the TSC at that
// moment: the midpoint of the TSC reads on either side, and their
// distance.
func lapicSample() (count uint32, tsc, width uint64) {
	a := x86.RDTSC()
	c := lapicR(lapicTCCR)
	b := x86.RDTSC()
	return c, a + (b-a)/2, b - a
}

func lapicEOIWrite() {
	if profiling {
		profEOIs++
	}
	lapicW(lapicEOI, 0)
}

// timerArmed is the deadline the LAPIC timer was last set to, 0 once it
// fired or was stopped. Every trap ends by arming the timer, and a write to
// it is an access the hypervisor traps and emulates (an exit each, ~100 us
// in the lab), so the timer is written only when the next deadline comes
// before the one set: an interrupt that comes too early costs a trap that
// finds nothing due and sets the timer again, at most once per deadline,
// where writing every later deadline cost a write per thread switch (the
// slice's end moves with each) and per sleep.
//
// A deadline that passed while interrupts were off (in a trap) has its
// interrupt pending, delivered as the trap returns: on Xen, writing the
// timer then would only add a second one, so it is set again only once it
// is timerLostAfter overdue. Under QEMU without Xen some interrupts were
// seen never to come (TestStress's GC fell behind, its sysmon asleep; the
// stdlib's time tests saw timers fire tens of ms late in CI when passed
// deadlines waited for the 10 ms), and a timer write costs little there:
// a passed deadline is set again at once.
var timerArmed uint64

// timerLostAfter is how long past its deadline a timer interrupt that has
// not come is taken for lost on Xen. Longer than a trap takes in the lab
// (an event-channel send that runs dom0 took up to a few ms).
const timerLostAfter = 10_000_000 // 10 ms

// timerFired records the timer's interrupt: the deadline is spent, even if
// the interrupt came early (the LAPIC's rate is calibrated, not exact).
func timerFired() { timerArmed = 0 }

// timerArm makes sure an interrupt comes at monotonic time ns or earlier
// (0: none is needed). idle says the CPU is about to halt: then a deadline
// that passed is set again at once, since a lost interrupt would leave it
// halted for good, where a running thread traps again soon.
func timerArm(ns uint64, idle bool) {
	if a := timerArmed; a != 0 && (ns == 0 || a <= ns) {
		if now := nanotime(); a > now || (onXen && !idle && now-a < timerLostAfter) {
			return // one at or before ns is on its way, or pending
		}
	}
	if ns == 0 {
		// Nothing armed, or one taken for lost: nothing to stop.
		timerArmed = 0
		return
	}
	timerArmed = ns
	if profiling {
		profTimerWrites++
		profTimerBy[profTimerWhy]++
	}
	now := nanotime()
	d := uint64(0)
	if ns > now {
		d = ns - now
	}
	hi, lo := bits.Mul64(d, apicHz)
	ticks := uint64(0xffffffff)
	if hi < 1e9 {
		q, _ := bits.Div64(hi, lo, 1e9)
		if q < ticks {
			ticks = q
		}
	}
	if ticks < 16 {
		ticks = 16
	}
	lapicW(lapicTICR, uint32(ticks))
}

// readRTC returns the CMOS real-time clock as Unix seconds (0 if absent).
func readRTC() uint64 {
	rd := func(r uint8) uint8 { x86.OutB(0x70, r); return x86.InB(0x71) }
	for i := 0; i < 1000000 && rd(0x0a)&0x80 != 0; i++ {
	}
	sec, min, hour := rd(0x00), rd(0x02), rd(0x04)
	day, mon, year := rd(0x07), rd(0x08), rd(0x09)
	century := rd(0x32)
	if rd(0x0a) == 0xff {
		return 0
	}
	if rd(0x0b)&0x04 == 0 { // BCD
		bcd := func(v uint8) uint8 { return v&0xf + v>>4*10 }
		sec, min, day, mon, year, century = bcd(sec), bcd(min), bcd(day), bcd(mon), bcd(year), bcd(century)
		hour = bcd(hour&0x7f) | hour&0x80
	}
	if hour&0x80 != 0 { // 12-hour clock, PM
		hour = (hour&0x7f)%12 + 12
	}
	y := uint64(year)
	if century >= 19 && century <= 30 {
		y += uint64(century) * 100
	} else {
		y += 2000
	}
	return unixSeconds(y, uint64(mon), uint64(day), uint64(hour), uint64(min), uint64(sec))
}

// unixSeconds converts a civil UTC time to Unix seconds (days-from-civil).
func unixSeconds(y, m, d, hh, mm, ss uint64) uint64 {
	if m < 1 || m > 12 || d < 1 || d > 31 || y < 1970 {
		return 0
	}
	yy := int64(y)
	if m <= 2 {
		yy--
	}
	era := yy / 400
	yoe := yy - era*400
	mp := (int64(m) + 9) % 12
	doy := (153*mp+2)/5 + int64(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	days := era*146097 + doe - 719468
	return uint64(days)*86400 + hh*3600 + mm*60 + ss
}

// Clock ids.
const (
	clockRealtime       = 0
	clockMonotonic      = 1
	clockProcessCPUTime = 2
	clockThreadCPUTime  = 3
	clockMonotonicRaw   = 4
	clockRealtimeCoarse = 5
	clockMonoCoarse     = 6
	clockBoottime       = 7
)

func clockNow(c *percpu, id int) (uint64, bool) {
	switch id {
	case clockRealtime, clockRealtimeCoarse:
		return wallBaseNS + nanotime(), true
	case clockMonotonic, clockMonotonicRaw, clockMonoCoarse, clockBoottime:
		return nanotime(), true
	case clockThreadCPUTime:
		t := &threads[c.cur]
		return t.cpuNS + nanotime() - t.runSince, true
	case clockProcessCPUTime:
		var sum uint64
		for i := range threads {
			sum += threads[i].cpuNS
		}
		t := &threads[c.cur]
		return sum + nanotime() - t.runSince, true
	}
	return 0, false
}

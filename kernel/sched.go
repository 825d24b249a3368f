package kernel

import "unsafe"

// Threads are the Linux threads the Go runtime creates with clone (its Ms).
// The kernel keeps no per-thread kernel stack: a system call either
// completes at once or parks the thread with a wake condition (futex word,
// deadline, epoll readiness), saving its user context; a later event makes
// it runnable with its result already in the saved RAX. So every kernel
// entry runs to completion on a per-CPU stack and returns into whichever
// thread should run next.

const maxThreads = 1024

const (
	tsFree = iota
	tsRunnable
	tsRunning
	tsBlocked
)

const (
	waitNone = iota
	waitFutex
	waitSleep
	waitEpoll
	waitPause
	waitIO    // blocked on an fd; the system call is re-executed on wake-up
	waitServe // a served file's call, until the server replies (serve.go)
)

type thread struct {
	state    int32
	tid      int32
	wait     int32
	epfd     int32
	waitFD   int32
	sysno    uint64 // number of the system call in progress
	regs     TrapFrame
	fx       uintptr // FXSAVE area (512 bytes, 16-aligned)
	fsbase   uintptr
	sigmask  uint64
	pending  uint64
	altSP    uintptr
	altSize  uintptr
	altFlags int32
	epMax    int32
	deadline uint64 // monotonic ns; 0 = none
	futex    uintptr
	epEvents uintptr
	cpuNS    uint64
	runSince uint64

	serveNew    int32 // object a forwarded call creates, or -1
	serveNonblk bool  // the forwarded call's descriptor is O_NONBLOCK
}

var (
	threads  [maxThreads]thread
	fxBuf    [maxThreads*512 + 16]byte
	nextTID  int32 = 1
	nThreads int
	runq     [maxThreads]int32
	runqHead int
	runqLen  int

	// threadsHigh is one past the highest slot in use. The scans a trap
	// makes over threads (deadlines, futex and readiness wake-ups) stop
	// there: a Go program has a few tens of threads, not maxThreads, and
	// under a hypervisor every trap pays for the whole scan.
	threadsHigh int
)

// live returns the thread slots that may be in use.
func live() []thread { return threads[:threadsHigh] }

func fxArea(i int) uintptr {
	return align(uintptr(unsafe.Pointer(&fxBuf[0])), 16) + uintptr(i)*512
}

// newThread returns a free thread slot, or -1.
func newThread() int {
	for i := range threads {
		if threads[i].state == tsFree {
			t := &threads[i]
			*t = thread{}
			t.fx = fxArea(i)
			t.tid = nextTID
			nextTID++
			nThreads++
			threadsHigh = max(threadsHigh, i+1)
			return i
		}
	}
	return -1
}

func runqPush(i int) {
	threads[i].state = tsRunnable
	runq[(runqHead+runqLen)%maxThreads] = int32(i)
	runqLen++
}

func runqPop() int {
	if runqLen == 0 {
		return -1
	}
	i := runq[runqHead]
	runqHead = (runqHead + 1) % maxThreads
	runqLen--
	return int(i)
}

// saveCurrent stores the running thread's context from f.
func saveCurrent(c *percpu, f *TrapFrame) *thread {
	t := &threads[c.cur]
	t.regs = *f
	now := nanotime()
	t.cpuNS += now - t.runSince
	return t
}

// block parks the current thread (its context saved from f) and switches.
func block(c *percpu, f *TrapFrame, wait int32, deadline uint64) {
	t := saveCurrent(c, f)
	t.state = tsBlocked
	t.wait = wait
	t.deadline = deadline
	c.cur = -1
	schedule(c, f)
}

// wake makes a blocked thread runnable with result r.
func wake(i int, r uint64) {
	t := &threads[i]
	t.regs.RAX = r
	t.wait = waitNone
	t.deadline = 0
	runqPush(i)
}

// yield moves the current thread to the back of the run queue.
func yield(c *percpu, f *TrapFrame) {
	if runqLen == 0 {
		return
	}
	saveCurrent(c, f)
	runqPush(int(c.cur))
	c.cur = -1
	schedule(c, f)
}

// schedule loads the next runnable thread into f, or arranges for the CPU
// to idle. c.cur must be -1 (the previous thread saved).
func schedule(c *percpu, f *TrapFrame) {
	i := runqPop()
	if i < 0 {
		c.fx = c.idleFX
		c.ufs = c.kfs
		c.idleReq = 1
		profGoIdle()
		return
	}
	load(c, i, f)
}

func load(c *percpu, i int, f *TrapFrame) {
	t := &threads[i]
	t.state = tsRunning
	t.runSince = nanotime()
	*f = t.regs
	c.cur = int32(i)
	c.fx = t.fx
	c.ufs = t.fsbase
	c.sliceEnd = t.runSince + timeSlice
}

// idlePoll runs in idleLoop after each wake-up. It returns the frame to
// restore, or 0 to keep halting.
func idlePoll() uintptr {
	c := &cpus[0]
	c.nest++
	runStrays()
	expireTimers(nanotime())
	var ret uintptr
	if i := runqPop(); i >= 0 {
		f := (*TrapFrame)(ptr(c.idleFrm))
		profWake()
		load(c, i, f)
		deliverSignals(c, f)
		ret = c.idleFrm
	}
	armTimer(c)
	if profiling && ret != 0 {
		profResume((*TrapFrame)(ptr(ret)).RIP)
	}
	c.nest--
	return ret
}

// expireTimers wakes every thread whose deadline has passed; their saved
// RAX already holds the timeout result.
func expireTimers(now uint64) {
	for i := range live() {
		t := &threads[i]
		if t.state == tsBlocked && t.deadline != 0 && t.deadline <= now {
			if t.wait == waitEpoll {
				t.regs.RAX = 0
			}
			t.wait = waitNone
			t.deadline = 0
			runqPush(i)
		}
	}
}

// armTimer programs the next timer interrupt: the earliest deadline plus
// timerSlack, or the end of the time slice when other threads wait to run.
func armTimer(c *percpu) {
	next, why := uint64(0), int32(waitNone)
	for i := range live() {
		t := &threads[i]
		if t.state != tsBlocked || t.deadline == 0 {
			continue
		}
		slack := uint64(timerSlack)
		if t.wait == waitSleep {
			slack = sleepSlack
		}
		if next == 0 || t.deadline+slack < next {
			next, why = t.deadline+slack, t.wait
		}
	}
	if c.cur >= 0 && runqLen > 0 && (next == 0 || c.sliceEnd < next) {
		next, why = c.sliceEnd, timerForSlice
	}
	if profiling {
		if n := profNextTick(next, nanotime()); n != next {
			next, why = n, timerForProfile
		}
		profTimerWhy = why
	}
	timerArm(next, c.cur < 0)
}

// Why the timer is set, besides a blocked thread's wait (waitFutex...):
// counted by the profiler.
const (
	timerForSlice = waitServe + 1 + iota
	timerForProfile
	timerWhys
)

// timerSlack is how late a timed wait (nanosleep, futex, epoll_pwait) may
// end, as Linux's default timer slack for a normal thread (timer_slack_ns,
// 50 us): the timer is set to the deadline plus the slack, and an interrupt
// that comes earlier for something else, after the deadline, ends the wait
// then. Waits never end early. The runtime's sysmon sleeps 20 us at a time
// while it retakes Ps from threads in system calls, which is constantly
// with served socket calls: on Linux each of those sleeps lasts ~70 us, and
// here each cost a timer write and an interrupt, VM exits under Xen.
const timerSlack = 50_000

// sleepSlack is timerSlack for nanosleep, which in a Go program only the
// runtime calls (Go's timers wait in futex and epoll_pwait): its sysmon
// sleeps 20 us at a time while it retakes Ps from threads in system
// calls, its spinning Ms 3 us between attempts to steal work. On one vCPU
// only one thread runs at a time, so a sooner retake gets no more work
// done; each wake-up costs a timer interrupt and two thread switches
// (~50 us of TCG time for the interrupt alone), and sysmon woke ~800
// times a second in a guest sending TCP. So these sleeps may end up to
// 2 ms late (defaultSleepSlack) under QEMU, 500 us on Xen (xenSleepSlack),
// mostly at an interrupt that comes anyway. On Xen, with 5 ms slices, this
// took a guest receiving TCP in the lab out of a mode where each frame
// cost ~13 timer exits; under QEMU, with 5 ms slices, a guest sending
// TCP went ~30% faster (docs/perf.md, the A/Bs of 2026-12-07 and -08).
// unikgo.sleepslack=DURATION overrides it.
var sleepSlack uint64 = defaultSleepSlack

const (
	defaultSleepSlack = 2_000_000
	xenSleepSlack     = 500_000
)

// timeSlice is how long a thread runs while others wait; each slice's
// end is a timer interrupt and a thread switch (on Xen, VM exits: a
// timer write, the interrupt, its EOI). With two Ps on one vCPU
// (uniprocessorMaxProcs) the runtime's GC worker and the allocating
// goroutines take turns by it: at 10 ms the stress program's heap
// outgrew its 96 MiB bound; at 2 and 5 ms it stays under it (TestStress,
// TestStressPVH). unikgo.timeslice=DURATION overrides it (at least
// minTimeSlice).
var timeSlice uint64 = 5_000_000 // 5 ms

const minTimeSlice = 100_000

// Futexes.
const (
	futexWait        = 0
	futexWake        = 1
	futexWaitBitset  = 9
	futexWakeBitset  = 10
	futexPrivate     = 128
	futexClockRealtm = 256
)

func sysFutex(c *percpu, f *TrapFrame) {
	addr, op, val := uintptr(f.RDI), int(f.RSI), uint32(f.RDX)
	switch op &^ (futexPrivate | futexClockRealtm) {
	case futexWait, futexWaitBitset:
		if addr&3 != 0 || !userOK(addr, 4, false) {
			f.RAX = errno(_EFAULT)
			return
		}
		if *(*uint32)(ptr(addr)) != val {
			f.RAX = errno(_EAGAIN)
			return
		}
		var deadline uint64
		if ts := uintptr(f.R10); ts != 0 {
			ns, ok := readTimespec(ts)
			if !ok {
				f.RAX = errno(_EINVAL)
				return
			}
			if op&^(futexPrivate|futexClockRealtm) == futexWaitBitset {
				// Absolute, on the monotonic clock (or realtime if flagged).
				if op&futexClockRealtm != 0 {
					ns -= realtimeOffset()
				}
				deadline = ns
				if deadline == 0 {
					deadline = 1
				}
			} else {
				deadline = nanotime() + ns
			}
		}
		f.RAX = errno(_ETIMEDOUT)
		threads[c.cur].futex = addr
		block(c, f, waitFutex, deadline)
	case futexWake, futexWakeBitset:
		n := int(val)
		woken := 0
		for i := range live() {
			if woken >= n {
				break
			}
			t := &threads[i]
			if t.state == tsBlocked && t.wait == waitFutex && t.futex == addr {
				wake(i, 0)
				woken++
			}
		}
		f.RAX = uint64(woken)
	default:
		f.RAX = errno(_ENOSYS)
	}
}

func readTimespec(p uintptr) (uint64, bool) {
	if !userOK(p, 16, false) {
		return 0, false
	}
	s := *(*int64)(ptr(p))
	ns := *(*int64)(ptr(p + 8))
	if s < 0 || ns < 0 || ns >= 1e9 {
		return 0, false
	}
	if s > 1<<33 {
		s = 1 << 33 // ~272 years: effectively forever, without overflow
	}
	return uint64(s)*1e9 + uint64(ns), true
}

func writeTimespec(p uintptr, ns uint64) bool {
	if !userOK(p, 16, true) {
		return false
	}
	*(*int64)(ptr(p)) = int64(ns / 1e9)
	*(*int64)(ptr(p + 8)) = int64(ns % 1e9)
	return true
}

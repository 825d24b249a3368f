package kernel

import "github.com/unikgo/unikgo/xenpv"

// VIRQ_DEBUG (public/xen.h): Xen raises it on every vCPU of every domain
// when its 'q' debug key is pressed (dump_domains, xen/common/keyhandler.c;
// `xl debug-keys q` in dom0). The kernel answers with its own state on the
// console, as Linux's sysrq-t answers: a guest that stopped making
// progress then says what each thread waits for. The lab's stall report
// (qemu-tests/xenlab Guest.EventState) presses 'q'.
const virqDebug = 1

// debugPort is VIRQ_DEBUG's port, 0 when unbound.
var debugPort uint32

// xenDebugInit binds VIRQ_DEBUG; without it the guest only misses the
// dump.
func xenDebugInit() {
	if p, err := xenpv.EvtchnBindVIRQ(virqDebug, 0); err == nil && p < xenpv.NumPorts {
		debugPort = p
		xenpv.Unmask(p)
	}
}

var (
	threadStates = [...]string{tsFree: "free", tsRunnable: "runnable", tsRunning: "running", tsBlocked: "blocked"}
	waitKinds    = [...]string{waitNone: "", waitFutex: " on a futex", waitSleep: " in nanosleep",
		waitEpoll: " in epoll_pwait", waitPause: " in pause", waitIO: " on an fd", waitServe: " on a server"}
)

// dumpState prints the scheduler's threads, the timer and the event
// machinery's counters. It runs in the upcall, with interrupts off.
func dumpState() {
	now := nanotime()
	c := &cpus[0]
	kprint("unikgo: state (VIRQ_DEBUG) at ")
	kprintDec(now / 1e6)
	kprint(" ms: current thread ")
	kprintDec(uint64(c.cur + 1))
	kprint(" (0: idle), ")
	kprintDec(uint64(runqLen))
	kprint(" runnable queued, timer ")
	if a := timerArmed; a == 0 {
		kprint("not set")
	} else if a >= now {
		kprint("due in ")
		kprintDec((a - now) / 1e3)
		kprint(" us")
	} else {
		kprint("overdue by ")
		kprintDec((now - a) / 1e3)
		kprint(" us")
	}
	kprint(", ")
	kprintDec(strayCount)
	kprint(" strays, ")
	kprintDec(lostFrames)
	kprint(" lost frames\n")
	for i := range live() {
		t := &threads[i]
		if t.state == tsFree {
			continue
		}
		kprint("unikgo:   thread ")
		kprintDec(uint64(i + 1))
		kprint(" tid ")
		kprintDec(uint64(t.tid))
		kprint(" ")
		kprint(threadStates[t.state])
		if t.state == tsBlocked && int(t.wait) < len(waitKinds) {
			kprint(waitKinds[t.wait])
			switch t.wait {
			case waitFutex:
				kprint(" ")
				kprintHex(uint64(t.futex))
			case waitIO:
				kprint(" ")
				kprintDec(uint64(t.waitFD))
			case waitServe, waitEpoll:
				kprint(" (syscall ")
				kprintDec(t.sysno)
				kprint(")")
			}
			if t.deadline != 0 {
				kprint(", deadline ")
				if t.deadline >= now {
					kprint("in ")
					kprintDec((t.deadline - now) / 1e3)
				} else {
					kprint("passed ")
					kprintDec((now - t.deadline) / 1e3)
				}
				kprint(" us")
			}
		}
		kprint(", rip ")
		kprintHex(t.regs.RIP)
		kprint("\n")
	}
	for i := range evtchnDevs {
		d := &evtchnDevs[i]
		if !d.used {
			continue
		}
		kprint("unikgo:   evtchn fd ")
		kprintDec(uint64(d.fd))
		kprint(": ")
		kprintDec(uint64(d.n))
		kprint(" fired ports unread; ports")
		for p := range portOwner {
			if int(portOwner[p]) == i+1 {
				kprint(" ")
				kprintDec(uint64(p))
			}
		}
		kprint("\n")
	}
}

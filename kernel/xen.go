package kernel

import "github.com/unikgo/unikgo/xenpv"

// Xen PVH platform: hypercalls, shared_info, the PV console, Xen's wall
// clock, event-channel upcalls on a LAPIC vector, and SCHEDOP_shutdown.

const xenUpcallVector = 0xf3

var (
	xenCons     xenpv.Console
	xenConsPort uint32
	onXen       bool
	// xenUpcallNoEOI: events are injected through CALLBACK_IRQ's vector,
	// which bypasses the local APIC and must not be EOI'd.
	xenUpcallNoEOI bool

	// xenTimer: deadlines go to Xen's single-shot timer, which raises
	// VIRQ_TIMER on xenTimerPort, instead of the LAPIC timer.
	xenTimer     bool
	xenTimerPort uint32
	// Set by the upcall: the timer's port fired, another port fired.
	xenTimerFired, xenDeviceFired bool
)

// xenTimerInit moves the kernel's timer to Xen's single-shot timer
// (VCPUOP_set_singleshot_timer, VIRQ_TIMER), as Linux's PVH guests do
// (unikgo.xentimer). Both cost an exit to set, but its interrupt is an
// event, injected through the callback vector without an EOI, where the
// LAPIC timer's interrupt needs an EOI: in the lab a timer interrupt took
// 390 us instead of 512. Only with the callback vector: an upcall through
// the LAPIC needs its EOI too. It is not the default: in the lab's network
// benchmark (docs/perf.md, the timer A/B of 2026-12-07) a guest receiving
// TCP with it fell into the slow mode in 9 of 10 boots, against 4 of 7 with
// the LAPIC timer in the same runs and 0 of 3 with the kernel as it was;
// the lab varies too much from boot to boot for more than that. Its
// deadlines are exact, where the LAPIC's come xenTimerLatePct late.
func xenTimerInit() {
	if !onXen || !xenUpcallNoEOI {
		return
	}
	port, err := xenpv.EvtchnBindVIRQ(xenpv.VIRQTimer, 0)
	if err != nil {
		kprint("unikgo: xen: cannot bind VIRQ_TIMER; the LAPIC timer stays\n")
		return
	}
	xenpv.StopPeriodicTimer(0)
	xenTimerPort, xenTimer = port, true
	xenpv.Unmask(port)
}

func xenInit() {
	xenpv.InitHypercalls(xenBase)
	if _, err := xenpv.MapSharedInfo(); err != nil {
		kprint("unikgo: xen: cannot map shared_info; continuing without event channels\n")
		return
	}
	onXen = true
	if c, err := xenpv.OpenConsole(); err == nil {
		xenCons = c
	} else {
		kprint("unikgo: xen: no PV console; output stays on port 0xe9\n")
	}
	if port, err := xenpv.GetParam(xenpv.ParamConsoleEvtchn); err == nil {
		xenConsPort = uint32(port)
	}
	if hz := xenpv.TSCHz(); hz != 0 {
		tscHz = hz
	}
	// Events come on xenUpcallVector: injected directly (no EOI) when
	// Xen offers it, else as a LAPIC interrupt that must be EOI'd.
	if f, err := xenpv.Features(0); err == nil && f&(1<<xenpv.FeatureHVMCallbackVector) != 0 &&
		xenpv.SetParam(xenpv.ParamCallbackIRQ, xenpv.CallbackVector(xenUpcallVector)) == nil {
		xenUpcallNoEOI = true
	} else if err := xenpv.SetUpcallVector(0, xenUpcallVector); err != nil {
		kprint("unikgo: xen: cannot set the event upcall vector\n")
	}
	platformShutdown = xenShutdown
}

// xenWallClock switches the monotonic clock to Xen system time and sets
// the realtime base from Xen's wall clock.
func xenWallClock() {
	if onXen {
		useXenClock()
		wallBaseNS = xenpv.WallClock() - nanotime()
	}
}

// xenShutdown ends the domain: poweroff for status 0, crash otherwise, so
// the toolstack's on_poweroff / on_crash policies apply. The status is
// printed first since Xen carries no exit code.
func xenShutdown(code int) {
	kprint("unikgo: exit status ")
	kprintDec(uint64(code))
	if requestedShutdown >= 0 {
		kprint(" (")
		kprintDec((nanotime() - requestedAt) / 1e6)
		kprint(" ms after the shutdown request)")
	}
	kprint("\n")
	reason := uint32(xenpv.ShutdownPoweroff)
	if code != 0 {
		reason = xenpv.ShutdownCrash
	}
	// After a toolstack request, exiting 0 or by the SIGTERM it caused is
	// the clean outcome: shut down as asked.
	if r := requestedShutdown; r >= 0 && (code == 0 || code == 128+15) {
		reason = uint32(r)
	}
	xenpv.SchedShutdown(reason)
}

// xenUpcall handles the event-channel upcall vector and reports whether
// the timer's port fired and whether another did.
func xenUpcall() (timer, device bool) {
	xenTimerFired, xenDeviceFired = false, false
	xenpv.ScanEvents(xenPortFired)
	return xenTimerFired, xenDeviceFired
}

func xenPortFired(port uint32) {
	if xenTimer && port == xenTimerPort {
		// Its pending bit is clear: unmasking takes no hypercall.
		xenTimerFired = true
		xenpv.Unmask(port)
		return
	}
	xenDeviceFired = true
	evtchnFired(port)
}

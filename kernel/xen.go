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
)

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
	xenDebugInit()
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

// xenUpcall handles the event-channel upcall vector.
func xenUpcall() {
	xenpv.ScanEvents(evtchnFired)
}

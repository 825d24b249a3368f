package kernel

import "github.com/unikgo/unikgo/x86"

// Power-off paths, tried in order: QEMU's isa-debug-exit device (port 0xf4,
// which makes QEMU exit with status (code<<1)|1), the platform's own
// shutdown (Xen's SCHEDOP_shutdown once xenpv registers it), ACPI S5, and
// finally halting with interrupts off, which Xen also treats as poweroff.

const debugExitPort = 0xf4

// platformShutdown, when set by a platform package, shuts the machine down
// with the given exit status (it must not return on success).
var platformShutdown func(code int)

func powerOff(code int) {
	profReport()
	if strayCount != 0 {
		// Worth knowing (and rare): see strayInterrupt.
		kprint("unikgo: ")
		kprintDec(strayCount)
		kprint(" interrupts came while interrupts were off (")
		kprintDec(strayLate)
		kprint(" LAPIC vectors handled late)\n")
	}
	if lostFrames != 0 {
		// See lostFrame.
		kprint("unikgo: ")
		kprintDec(lostFrames)
		kprint(" interrupt frames overwritten by a second delivery; the idle loop resumed\n")
	}
	if verbose && platformShutdown == nil {
		kprint("unikgo: exit status ")
		kprintDec(uint64(code))
		kprint("\n")
	}
	x86.OutB(debugExitPort, uint8(code))
	if platformShutdown != nil {
		platformShutdown(code)
	}
	acpiPowerOff()
	haltForever()
}

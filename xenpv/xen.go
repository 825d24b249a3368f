// Package xenpv holds the Xen PV primitives a PVH guest needs before and
// beside everything else: detecting Xen, the hypercall page and typed
// hypercalls, HVM parameters, the shared_info page (time, wall clock and
// the 2-level event channel bitmaps) and the PV console ring. It uses no
// Go runtime services, so the kernel calls it from boot and trap context;
// ordinary Go code (xenstore, drivers) calls it too, since everything runs
// in one address space at the same privilege. Layouts follow Xen's public
// headers as recorded in shared/docs/xen-abi.md (checked by the tests).
package xenpv

import (
	"unsafe"

	"github.com/unikgo/unikgo/x86"
)

// Hypercall numbers (xen/include/public/xen.h).
const (
	HypervisorMemoryOp     = 12
	HypervisorSetTimerOp   = 15
	HypervisorXenVersion   = 17
	HypervisorConsoleIO    = 18
	HypervisorGrantTableOp = 20
	HypervisorVCPUOp       = 24
	HypervisorSchedOp      = 29
	HypervisorEventChanOp  = 32
	HypervisorHVMOp        = 34
)

// Sub-operations.
const (
	SchedOpYield    = 0
	SchedOpBlock    = 1
	SchedOpShutdown = 2
	SchedOpPoll     = 3

	ShutdownPoweroff = 0
	ShutdownReboot   = 1
	ShutdownSuspend  = 2
	ShutdownCrash    = 3

	EvtchnOpBindInterdomain = 0
	EvtchnOpBindVIRQ        = 1
	EvtchnOpClose           = 3
	EvtchnOpSend            = 4
	EvtchnOpStatus          = 5
	EvtchnOpAllocUnbound    = 6
	EvtchnOpUnmask          = 9

	VCPUOpStopPeriodicTimer  = 7
	VCPUOpSetSingleshotTimer = 8

	VIRQTimer = 0 // the vCPU's timers fire this VIRQ

	HVMOpSetParam              = 0
	HVMOpGetParam              = 1
	HVMOpSetEvtchnUpcallVector = 23

	MemOpAddToPhysmap  = 7
	MapSpaceSharedInfo = 0
	MapSpaceGrantTable = 1

	DomIDSelf = 0x7ff0
)

// HVM parameter indices.
const (
	ParamCallbackIRQ   = 0
	ParamStorePFN      = 1
	ParamStoreEvtchn   = 2
	ParamConsolePFN    = 17
	ParamConsoleEvtchn = 18
)

// Errno values Xen returns (negated), as in xen/include/public/errno.h.
const (
	EPERM  = 1
	ENOENT = 2
	EAGAIN = 11
	ENOMEM = 12
	EINVAL = 22
	ENOSYS = 38
)

// Error is a hypercall failure (a negated Xen errno).
type Error int

func (e Error) Error() string {
	switch int(e) {
	case EPERM:
		return "xen: operation not permitted"
	case ENOENT:
		return "xen: no such entry"
	case EAGAIN:
		return "xen: try again"
	case ENOMEM:
		return "xen: out of memory"
	case EINVAL:
		return "xen: invalid argument"
	case ENOSYS:
		return "xen: hypercall not implemented"
	}
	return "xen: error " + itoa(int(e))
}

func itoa(v int) string {
	var b [20]byte
	i := len(b)
	neg := v < 0
	if neg {
		v = -v
	}
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

func result(r uintptr) error {
	if int64(r) < 0 {
		return Error(-int64(r))
	}
	return nil
}

var (
	base   uint32 // CPUID leaf base, 0 when not on Xen
	hcPage uintptr
)

func call(nr, a1, a2, a3, a4, a5 uintptr) uintptr
func hcBufAddr() uintptr

// Detect scans the hypervisor CPUID leaves for Xen's signature
// "XenVMMXenVMM" and returns the leaf base, or 0.
func Detect() uint32 {
	for b := uint32(0x40000000); b < 0x40010000; b += 0x100 {
		a, x, y, z := x86.CPUID(b, 0)
		if x == 0x566e6558 && y == 0x65584d4d && z == 0x4d4d566e && a-b >= 2 {
			return b
		}
	}
	return 0
}

// Version returns Xen's major and minor version (CPUID base+1).
func Version() (major, minor uint32) {
	a, _, _, _ := x86.CPUID(base+1, 0)
	return a >> 16, a & 0xffff
}

// DomID returns this domain's id when Xen reports it (CPUID base+4).
func DomID() (uint16, bool) {
	a, _, c, _ := x86.CPUID(base+4, 0)
	return uint16(c), a&(1<<4) != 0
}

// TSCHz returns the guest TSC frequency Xen reports (CPUID base+3), or 0.
func TSCHz() uint64 {
	_, _, khz, _ := x86.CPUID(base+3, 0)
	return uint64(khz) * 1000
}

// InitHypercalls installs the hypercall page: writing its physical address
// to the MSR named by CPUID base+2 makes Xen fill it with call stubs. The
// page is in the identity-mapped image, so its address is physical.
func InitHypercalls(b uint32) {
	base = b
	hcPage = (hcBufAddr() + 4095) &^ 4095
	_, msr, _, _ := x86.CPUID(base+2, 0)
	x86.WRMSR(msr, uint64(hcPage))
}

// Ready reports whether hypercalls are available.
func Ready() bool { return hcPage != 0 }

// SchedShutdown asks Xen to shut the domain down with reason.
func SchedShutdown(reason uint32) error {
	arg := reason
	return result(call(HypervisorSchedOp, SchedOpShutdown, uintptr(unsafe.Pointer(&arg)), 0, 0, 0))
}

// SchedYield gives up the vCPU for a moment.
func SchedYield() { call(HypervisorSchedOp, SchedOpYield, 0, 0, 0, 0) }

// EvtchnSend notifies the remote end of a local port.
func EvtchnSend(port uint32) error {
	arg := port
	return result(call(HypervisorEventChanOp, EvtchnOpSend, uintptr(unsafe.Pointer(&arg)), 0, 0, 0))
}

// EvtchnUnmask unmasks a port through Xen (which redelivers it if pending).
func EvtchnUnmask(port uint32) error {
	arg := port
	return result(call(HypervisorEventChanOp, EvtchnOpUnmask, uintptr(unsafe.Pointer(&arg)), 0, 0, 0))
}

// EvtchnAllocUnbound allocates a local port that domain remote may bind.
func EvtchnAllocUnbound(remote uint16) (uint32, error) {
	var a struct {
		dom, remoteDom uint16
		port           uint32
	}
	a.dom, a.remoteDom = DomIDSelf, remote
	if err := result(call(HypervisorEventChanOp, EvtchnOpAllocUnbound, uintptr(unsafe.Pointer(&a)), 0, 0, 0)); err != nil {
		return 0, err
	}
	return a.port, nil
}

// EvtchnBindInterdomain binds a local port to (remote, remotePort).
func EvtchnBindInterdomain(remote uint16, remotePort uint32) (uint32, error) {
	var a struct {
		remoteDom  uint16
		_          uint16
		remotePort uint32
		localPort  uint32
	}
	a.remoteDom, a.remotePort = remote, remotePort
	if err := result(call(HypervisorEventChanOp, EvtchnOpBindInterdomain, uintptr(unsafe.Pointer(&a)), 0, 0, 0)); err != nil {
		return 0, err
	}
	return a.localPort, nil
}

// EvtchnClose closes a local port.
func EvtchnClose(port uint32) error {
	arg := port
	return result(call(HypervisorEventChanOp, EvtchnOpClose, uintptr(unsafe.Pointer(&arg)), 0, 0, 0))
}

// bindVIRQ is struct evtchn_bind_virq (12 bytes).
type bindVIRQ struct {
	virq, vcpu uint32
	port       uint32 // out
}

// EvtchnBindVIRQ binds virtual interrupt virq of vCPU vcpu to a new local
// port.
func EvtchnBindVIRQ(virq, vcpu uint32) (uint32, error) {
	a := bindVIRQ{virq: virq, vcpu: vcpu}
	if err := result(call(HypervisorEventChanOp, EvtchnOpBindVIRQ, uintptr(unsafe.Pointer(&a)), 0, 0, 0)); err != nil {
		return 0, err
	}
	return a.port, nil
}

// singleshotTimer is struct vcpu_set_singleshot_timer (public/vcpu.h, 16
// bytes with its tail padding).
type singleshotTimer struct {
	timeoutAbsNS uint64
	flags        uint32 // VCPU_SSHOTTMR_future (1) refuses a passed time; unused
	_            uint32
}

// SetSingleshotTimer sets vCPU vcpu's one-shot timer to raise VIRQ_TIMER at
// Xen system time ns (a time already passed raises it at once), replacing
// the one set before. Unlike a LAPIC timer the interrupt comes as an event,
// which needs no EOI: one exit fewer per timer interrupt in an HVM guest.
func SetSingleshotTimer(vcpu uint32, ns uint64) error {
	a := singleshotTimer{timeoutAbsNS: ns}
	return result(call(HypervisorVCPUOp, VCPUOpSetSingleshotTimer, uintptr(vcpu), uintptr(unsafe.Pointer(&a)), 0, 0))
}

// StopPeriodicTimer stops vCPU vcpu's periodic timer, if it has one (PV
// vCPUs start with one at 100 Hz).
func StopPeriodicTimer(vcpu uint32) error {
	return result(call(HypervisorVCPUOp, VCPUOpStopPeriodicTimer, uintptr(vcpu), 0, 0, 0))
}

// hvmParam is struct xen_hvm_param (16 bytes).
type hvmParam struct {
	domid uint16
	_     uint16
	index uint32
	value uint64
}

// GetParam reads an HVM parameter of this domain.
func GetParam(index uint32) (uint64, error) {
	p := hvmParam{domid: DomIDSelf, index: index}
	if err := result(call(HypervisorHVMOp, HVMOpGetParam, uintptr(unsafe.Pointer(&p)), 0, 0, 0)); err != nil {
		return 0, err
	}
	return p.value, nil
}

// SetParam sets an HVM parameter of this domain.
func SetParam(index uint32, value uint64) error {
	p := hvmParam{domid: DomIDSelf, index: index, value: value}
	return result(call(HypervisorHVMOp, HVMOpSetParam, uintptr(unsafe.Pointer(&p)), 0, 0, 0))
}

// CallbackVector is the CALLBACK_IRQ value that has Xen deliver pending
// events by injecting vector directly, bypassing the local APIC: unlike
// SetUpcallVector's interrupt it needs no EOI (one exit fewer per event
// under a hypervisor). It needs FeatureHVMCallbackVector.
func CallbackVector(vector uint8) uint64 { return 2<<56 | uint64(vector) }

// Xen feature bits (XENVER_get_features, public/features.h), submap 0.
const FeatureHVMCallbackVector = 8

// xenFeatureInfo is struct xen_feature_info (8 bytes).
type xenFeatureInfo struct {
	submapIdx uint32
	submap    uint32
}

const xenVerGetFeatures = 6

// Features returns the 32 feature bits of submap idx.
func Features(idx uint32) (uint32, error) {
	f := xenFeatureInfo{submapIdx: idx}
	if err := result(call(HypervisorXenVersion, xenVerGetFeatures, uintptr(unsafe.Pointer(&f)), 0, 0, 0)); err != nil {
		return 0, err
	}
	return f.submap, nil
}

// SetUpcallVector asks Xen to signal pending events on vCPU vcpu with a
// LAPIC interrupt on vector (HVMOP_set_evtchn_upcall_vector; needs EOI).
func SetUpcallVector(vcpu uint32, vector uint8) error {
	a := struct {
		vcpu   uint32
		vector uint8
	}{vcpu, vector}
	return result(call(HypervisorHVMOp, HVMOpSetEvtchnUpcallVector, uintptr(unsafe.Pointer(&a)), 0, 0, 0))
}

// addToPhysmap is struct xen_add_to_physmap (24 bytes).
type addToPhysmap struct {
	domid uint16
	size  uint16
	space uint32
	idx   uint64
	gpfn  uint64
}

// AddToPhysmap maps Xen's frame idx of space at guest frame gpfn.
func AddToPhysmap(space uint32, idx, gpfn uint64) error {
	a := addToPhysmap{domid: DomIDSelf, space: space, idx: idx, gpfn: gpfn}
	return result(call(HypervisorMemoryOp, MemOpAddToPhysmap, uintptr(unsafe.Pointer(&a)), 0, 0, 0))
}

// Grant-table and memory sub-operations used by package gnttab.
const (
	GnttabOpMapGrantRef   = 0
	GnttabOpUnmapGrantRef = 1
	GnttabOpCopy          = 5
	GnttabOpQuerySize     = 6

	MemOpDecreaseReservation = 1
	MemOpPopulatePhysmap     = 6
)

// GrantTableOp issues GNTTABOP cmd on count consecutive argument structs
// at ops. Per-op results are in each struct's status field.
func GrantTableOp(cmd uint32, ops unsafe.Pointer, count int) error {
	return result(call(HypervisorGrantTableOp, uintptr(cmd), uintptr(ops), uintptr(count), 0, 0))
}

// MemoryOp issues XENMEM cmd and returns its non-negative result (for
// reservation ops, the number of extents done).
func MemoryOp(cmd uint32, arg unsafe.Pointer) (int, error) {
	r := call(HypervisorMemoryOp, uintptr(cmd), uintptr(arg), 0, 0, 0)
	if err := result(r); err != nil {
		return 0, err
	}
	return int(r), nil
}

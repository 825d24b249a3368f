package xenpv

import (
	"github.com/unikgo/unikgo/x86"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Layout of struct shared_info (x86-64) and its vcpu_info entries.
const (
	VCPUInfoSize      = 64
	vcpuUpcallPending = 0
	vcpuUpcallMask    = 1
	vcpuPendingSel    = 8
	vcpuTime          = 32 // struct vcpu_time_info

	timeVersion   = 0
	timeTSCStamp  = 8
	timeSystem    = 16
	timeMul       = 24
	timeShift     = 28
	sharedPending = 2048 // evtchn_pending[64]uint64
	sharedMask    = 2560 // evtchn_mask[64]uint64
	sharedWCVer   = 3072
	sharedWCSec   = 3076
	sharedWCNsec  = 3080
	sharedWCSecHi = 3084

	NumPorts = 4096 // 2-level ABI on 64-bit guests
)

// Two BSS pages: the aligned one inside is given up to Xen, which maps
// shared_info at that guest frame in its place.
var siBuf [2 * 4096]byte

var shared uintptr

// MapSharedInfo maps shared_info over a page of the image and returns its
// address.
func MapSharedInfo() (uintptr, error) {
	p := (uintptr(unsafe.Pointer(&siBuf[0])) + 4095) &^ 4095
	if err := AddToPhysmap(MapSpaceSharedInfo, 0, uint64(p>>12)); err != nil {
		return 0, err
	}
	shared = p
	return p, nil
}

func at(off uintptr) unsafe.Pointer { return unsafe.Add(nil, shared+off) }

// SystemTime returns Xen's system time (ns since the host booted) as seen
// by vCPU 0, read under the version protocol of vcpu_time_info.
func SystemTime() uint64 {
	t := uintptr(vcpuTime)
	for {
		v := atomic.LoadUint32((*uint32)(at(t + timeVersion)))
		stamp := *(*uint64)(at(t + timeTSCStamp))
		sys := *(*uint64)(at(t + timeSystem))
		mul := *(*uint32)(at(t + timeMul))
		shift := *(*int8)(at(t + timeShift))
		if v&1 == 0 && atomic.LoadUint32((*uint32)(at(t+timeVersion))) == v {
			d := x86.RDTSC() - stamp
			if int64(d) < 0 {
				// A TSC read before the stamp (another vCPU's, or
				// reordered): the time is the stamp's, not 2^64
				// ticks later.
				d = 0
			}
			if shift >= 0 {
				d <<= uint(shift)
			} else {
				d >>= uint(-shift)
			}
			hi, lo := bits.Mul64(d, uint64(mul))
			return sys + (hi<<32 | lo>>32)
		}
	}
}

// WallClock returns the current time in Unix nanoseconds: the wall clock
// at system time zero (wc_*) plus the system time.
func WallClock() uint64 {
	for {
		v := atomic.LoadUint32((*uint32)(at(sharedWCVer)))
		sec := uint64(*(*uint32)(at(sharedWCSec))) | uint64(*(*uint32)(at(sharedWCSecHi)))<<32
		nsec := uint64(*(*uint32)(at(sharedWCNsec)))
		if v&1 == 0 && atomic.LoadUint32((*uint32)(at(sharedWCVer))) == v {
			return sec*1e9 + nsec + SystemTime()
		}
	}
}

// ScanEvents runs the 2-level upcall protocol for vCPU 0: clear
// upcall_pending, take the selector word, and for every pending unmasked
// port mask it, clear its pending bit and call fn. Masking hands the port
// to its consumer, which unmasks it when done (Unmask), so a busy port
// cannot storm the upcall.
func ScanEvents(fn func(port uint32)) {
	*(*uint8)(at(vcpuUpcallPending)) = 0
	sel := atomic.SwapUint64((*uint64)(at(vcpuPendingSel)), 0)
	for sel != 0 {
		i := uintptr(bits.TrailingZeros64(sel))
		sel &^= 1 << i
		pend := (*uint64)(at(sharedPending + 8*i))
		mask := (*uint64)(at(sharedMask + 8*i))
		for {
			w := atomic.LoadUint64(pend) &^ atomic.LoadUint64(mask)
			if w == 0 {
				break
			}
			b := uintptr(bits.TrailingZeros64(w))
			atomic.OrUint64(mask, 1<<b)
			atomic.AndUint64(pend, ^uint64(1<<b))
			fn(uint32(i*64 + b))
		}
	}
}

// Mask masks port.
func Mask(port uint32) {
	if port >= NumPorts {
		return
	}
	atomic.OrUint64((*uint64)(at(sharedMask+8*uintptr(port/64))), 1<<(port%64))
}

// Unmask clears port's mask bit. If an event arrived while it was masked,
// Xen must raise the upcall again; EVTCHNOP_unmask does that only when it
// is the one to clear a set mask bit, so the bit is set again first (as
// Linux's unmask_evtchn does for HVM guests).
func Unmask(port uint32) {
	if port >= NumPorts {
		return
	}
	w := uintptr(port / 64)
	bit := uint64(1) << (port % 64)
	atomic.AndUint64((*uint64)(at(sharedMask+8*w)), ^bit)
	if atomic.LoadUint64((*uint64)(at(sharedPending+8*w)))&bit != 0 {
		atomic.OrUint64((*uint64)(at(sharedMask+8*w)), bit)
		EvtchnUnmask(port)
	}
}

// Shared returns the mapped shared_info address (0 before MapSharedInfo).
func Shared() uintptr { return shared }

// TimeInfo returns the address of vCPU 0's struct vcpu_time_info, which
// SystemTime reads (0 before MapSharedInfo).
func TimeInfo() uintptr {
	if shared == 0 {
		return 0
	}
	return shared + vcpuTime
}

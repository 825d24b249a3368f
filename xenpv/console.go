package xenpv

import (
	"github.com/unikgo/unikgo/x86"
	"sync/atomic"
	"unsafe"
)

// The PV console ring (xen/include/public/io/console.h): struct
// xencons_interface with in[1024]@0, out[2048]@1024, in_cons@3072,
// in_prod@3076, out_cons@3080, out_prod@3084. The page and its event
// channel come from HVM_PARAM_CONSOLE_PFN / _EVTCHN; xenconsoled in dom0
// drains "out" into its logs and `xl console`.
const (
	consIn      = 0
	consInSize  = 1024
	consOut     = 1024
	consOutSize = 2048
	consInCons  = 3072
	consInProd  = 3076
	consOutCons = 3080
	consOutProd = 3084
)

// Console is the PV console of this domain.
type Console struct {
	page uintptr
	port uint32
}

// OpenConsole finds the console page and event channel.
func OpenConsole() (Console, error) {
	pfn, err := GetParam(ParamConsolePFN)
	if err != nil {
		return Console{}, err
	}
	port, err := GetParam(ParamConsoleEvtchn)
	if err != nil {
		return Console{}, err
	}
	if pfn == 0 || pfn >= 1<<20 { // must lie in the identity-mapped 4 GiB
		return Console{}, Error(EINVAL)
	}
	return Console{page: uintptr(pfn << 12), port: uint32(port)}, nil
}

func (c *Console) idx(off uintptr) *uint32 { return (*uint32)(unsafe.Add(nil, c.page+off)) }

// Write copies b into the out ring, waiting (yielding the vCPU) while the
// ring is full, and notifies xenconsoled. It never blocks forever: a
// console nobody drains drops output after a bounded wait.
func (c *Console) Write(b []byte) {
	if c.page == 0 {
		return
	}
	out := unsafe.Slice((*byte)(unsafe.Add(nil, c.page+consOut)), consOutSize)
	for len(b) > 0 {
		cons := atomic.LoadUint32(c.idx(consOutCons))
		prod := atomic.LoadUint32(c.idx(consOutProd))
		space := consOutSize - (prod - cons)
		if space == 0 || space > consOutSize {
			// Full: let xenconsoled drain it. Wait up to 10 s of real time
			// (a loaded dom0 can be slow) before giving output up, so a
			// console nobody drains cannot hang the guest.
			EvtchnSend(c.port)
			if !c.waitSpace(prod) {
				return
			}
			continue
		}
		n := uint32(len(b))
		if n > space {
			n = space
		}
		for i := uint32(0); i < n; i++ {
			out[(prod+i)%consOutSize] = b[i]
		}
		atomic.StoreUint32(c.idx(consOutProd), prod+n) // release: data before index
		b = b[n:]
	}
	EvtchnSend(c.port)
}

// Ready reports whether the console was opened.
func (c *Console) Ready() bool { return c.page != 0 }

// waitSpace yields the vCPU until the consumer has moved past prod-2048.
func (c *Console) waitSpace(prod uint32) bool {
	hz := TSCHz()
	if hz == 0 {
		hz = 1e9
	}
	start := x86.RDTSC()
	for x86.RDTSC()-start < 10*hz {
		SchedYield()
		if prod-atomic.LoadUint32(c.idx(consOutCons)) < consOutSize {
			return true
		}
	}
	return false
}

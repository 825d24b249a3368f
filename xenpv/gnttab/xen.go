package gnttab

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv"
)

// xen issues the hypercalls. Argument structs live in Go memory that is
// already touched (Xen reads them through the guest's page tables and
// fails with EFAULT on a page not yet backed).
type xen struct{}

func (xen) querySize() (uint32, uint32, error) {
	q := querySize{dom: uint16(DomIDSelf)}
	if err := xenpv.GrantTableOp(xenpv.GnttabOpQuerySize, unsafe.Pointer(&q), 1); err != nil {
		return 0, 0, fmt.Errorf("gnttab: query table size: %w", err)
	}
	if q.status != 0 {
		return 0, 0, fmt.Errorf("gnttab: query table size: %w", Status(q.status))
	}
	return q.nrFrames, q.maxFrames, nil
}

func (xen) mapTableFrame(idx uint32, gfn uint64) error {
	return xenpv.AddToPhysmap(xenpv.MapSpaceGrantTable, uint64(idx), gfn)
}

func (xen) mapGrants(ops []mapGrantRef) error {
	return xenpv.GrantTableOp(xenpv.GnttabOpMapGrantRef, unsafe.Pointer(&ops[0]), len(ops))
}

func (xen) unmapGrants(ops []unmapGrantRef) error {
	return xenpv.GrantTableOp(xenpv.GnttabOpUnmapGrantRef, unsafe.Pointer(&ops[0]), len(ops))
}

func (xen) copy(ops []copyOp) error {
	return xenpv.GrantTableOp(xenpv.GnttabOpCopy, unsafe.Pointer(&ops[0]), len(ops))
}

func (xen) releaseFrames(gfns []uint64) error {
	r := memoryReservation{
		extentStart: uint64(uintptr(unsafe.Pointer(&gfns[0]))),
		nrExtents:   uint64(len(gfns)),
		domid:       uint16(DomIDSelf),
	}
	n, err := xenpv.MemoryOp(xenpv.MemOpDecreaseReservation, unsafe.Pointer(&r))
	runtime.KeepAlive(gfns)
	if err != nil {
		return err
	}
	if n != len(gfns) {
		return fmt.Errorf("Xen released %d of %d frames", n, len(gfns))
	}
	return nil
}

func (xen) page(gfn uint64) []byte {
	// Guest-physical memory is identity-mapped by the kernel.
	return unsafe.Slice((*byte)(unsafe.Add(nil, uintptr(gfn*pageSize))), pageSize)
}

var (
	openOnce sync.Once
	table    *Table
	openErr  error
)

// Open returns this domain's grant table, setting it up on first use.
// It fails outside a unikgo guest on Xen.
func Open() (*Table, error) {
	openOnce.Do(func() {
		if !xenpv.Ready() {
			openErr = errors.New("gnttab: not running as a Xen guest")
			return
		}
		mem, err := dma.System()
		if err != nil {
			openErr = err
			return
		}
		table, openErr = newTable(xen{}, mem)
	})
	return table, openErr
}

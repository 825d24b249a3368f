package kernel

// /dev/unikgo/dma: pinned, physically contiguous, zeroed memory for
// drivers. Devices (virtio) and other domains (Xen grants) name memory by
// physical address, which Go's heap cannot give: its pages are mapped
// lazily at addresses of the kernel's choosing. Frames from this device lie
// in the identity map, so a region's physical address is also where Go
// code reads and writes it. Allocations belong to the open file and are
// freed when it is closed; kernel/dma is the Go side.

const (
	ioctlDMAAlloc = 0xc0104400 // _IOWR('D', 0, struct{size, phys u64})
	ioctlDMAFree  = 0x40104401 // _IOW('D', 1, struct{size, phys u64})

	maxDMARegions = 1024
	maxDMAPages   = 1 << 16 // one region: 256 MiB
)

type dmaRegion struct {
	pa    uintptr
	pages uint32
	owner int16 // fd + 1 of the device file; 0 = free slot
}

var dmaRegions [maxDMARegions]dmaRegion

const fdDMA = fdEvtchn + 1

func dmaOpen(flags uint64) uint64 {
	fd := allocFD(fdesc{kind: fdDMA, cloexec: flags&0x80000 != 0})
	if fd < 0 {
		return errno(_EMFILE)
	}
	return uint64(fd)
}

// allocContig takes n contiguous frames from the unbumped part of a RAM
// range (the free list is not contiguous), keeping the OOM reserve so
// that driver memory cannot starve the Go heap of its last frames.
func allocContig(n uintptr) (uintptr, bool) {
	if uint64(n)+oomReserve() > freeFrames {
		return 0, false
	}
	for i := 0; i < nFrameRange; i++ {
		r := &frameRanges[i]
		if r.end-r.next >= n*pageSize {
			pa := r.next
			r.next += n * pageSize
			freeFrames -= uint64(n)
			memclr(pa, n*pageSize)
			return pa, true
		}
	}
	return 0, false
}

func dmaIoctl(fd int64, req uint64, arg uintptr) uint64 {
	if !userOK(arg, 16, req == ioctlDMAAlloc) {
		return errno(_EFAULT)
	}
	size := *(*uint64)(ptr(arg))
	if size == 0 || size > maxDMAPages*pageSize {
		return errno(_EINVAL)
	}
	n := uintptr(align(uintptr(size), pageSize) / pageSize)
	switch req {
	case ioctlDMAAlloc:
		for i := range dmaRegions {
			r := &dmaRegions[i]
			if r.owner != 0 {
				continue
			}
			pa, ok := allocContig(n)
			if !ok {
				return errno(_ENOMEM)
			}
			*r = dmaRegion{pa: pa, pages: uint32(n), owner: int16(fd + 1)}
			*(*uint64)(ptr(arg + 8)) = uint64(pa)
			return 0
		}
		return errno(_ENOMEM)
	case ioctlDMAFree:
		pa := uintptr(*(*uint64)(ptr(arg + 8)))
		for i := range dmaRegions {
			r := &dmaRegions[i]
			if r.owner == int16(fd+1) && r.pa == pa && uintptr(r.pages) == n {
				dmaRelease(r)
				return 0
			}
		}
		return errno(_EINVAL)
	}
	return errno(_ENOTTY)
}

func dmaRelease(r *dmaRegion) {
	for i := uintptr(0); i < uintptr(r.pages); i++ {
		freeFrame(r.pa + i*pageSize)
	}
	*r = dmaRegion{}
}

// dmaClose frees what the file still holds.
func dmaClose(fd int) {
	for i := range dmaRegions {
		if r := &dmaRegions[i]; r.owner == int16(fd+1) {
			dmaRelease(r)
		}
	}
}

package kernel

import "unsafe"

// Memory layout. PML4 slot 0 (the low 512 GiB) is the kernel's identity map
// of physical memory (RAM, the image, MMIO below 4 GiB), shared by all code
// since there is one address space. Go's mappings (mmap) live in PML4 slots
// 1..255, backed lazily by zeroed frames on first touch. Page 0 is unmapped
// so that nil dereferences fault.
const (
	pageSize  = 4096
	pageShift = 12

	userBase  = 1 << 39 // first address mmap hands out (PML4 slot 1)
	userTop   = 1 << 47 // end of the canonical lower half
	mmapStart = 0x7f0000000000

	ptePresent = 1 << 0
	pteWrite   = 1 << 1
	pteHuge    = 1 << 7
	pteNX      = 1 << 63
	pteAddr    = 0x000ffffffffff000
)

// Protection bits as in mmap(2).
const (
	protRead  = 1
	protWrite = 2
	protExec  = 4
)

// Physical frames: bump allocation through the RAM ranges, and a free list
// threaded through freed frames (each holds the next free frame's address).
type frameRange struct{ next, end uintptr }

var (
	frameRanges [16]frameRange
	nFrameRange int
	freeList    uintptr
	freeFrames  uint64 // frames available (free list + unbumped)
	totalFrames uint64
	ramBytes    uint64
	identTop    uintptr // end of the identity map
	pml4        uintptr
)

func addFrameRange(start, end uintptr) {
	start = align(start, pageSize)
	end &^= pageSize - 1
	if end <= start || nFrameRange == len(frameRanges) {
		return
	}
	frameRanges[nFrameRange] = frameRange{start, end}
	nFrameRange++
	n := uint64(end-start) / pageSize
	freeFrames += n
	totalFrames += n
}

// allocFrame returns a zeroed physical frame.
func allocFrame() (uintptr, bool) {
	var pa uintptr
	if freeList != 0 {
		pa = freeList
		freeList = *(*uintptr)(ptr(pa))
	} else {
		for i := 0; i < nFrameRange; i++ {
			r := &frameRanges[i]
			if r.next < r.end {
				pa = r.next
				r.next += pageSize
				break
			}
		}
		if pa == 0 {
			return 0, false
		}
	}
	freeFrames--
	memclr(pa, pageSize)
	return pa, true
}

func freeFrame(pa uintptr) {
	*(*uintptr)(ptr(pa)) = freeList
	freeList = pa
	freeFrames++
}

func memclr(p, n uintptr) {
	b := unsafe.Slice((*uint64)(ptr(p)), n/8)
	for i := range b {
		b[i] = 0
	}
}

func table(pa uintptr) *[512]uint64 { return (*[512]uint64)(ptr(pa)) }

// setupPaging builds the final page tables: an identity map of
// [0, identTop) with 2 MiB pages, except the first 2 MiB which use 4 KiB
// pages so that page 0 can be left out.
func setupPaging(ramTop uint64) bool {
	top := uint64(4 << 30)
	if ramTop > top {
		top = ramTop
	}
	top = (top + 1<<30 - 1) &^ (1<<30 - 1)
	if top > 1<<39 {
		top = 1 << 39
	}
	identTop = uintptr(top)
	var ok bool
	if pml4, ok = allocFrame(); !ok {
		return false
	}
	pdpt, ok := allocFrame()
	if !ok {
		return false
	}
	table(pml4)[0] = uint64(pdpt) | ptePresent | pteWrite
	for g := uint64(0); g < top>>30; g++ {
		pd, ok := allocFrame()
		if !ok {
			return false
		}
		table(pdpt)[g] = uint64(pd) | ptePresent | pteWrite
		for i := uint64(0); i < 512; i++ {
			table(pd)[i] = (g<<30 + i<<21) | ptePresent | pteWrite | pteHuge
		}
	}
	pt, ok := allocFrame()
	if !ok {
		return false
	}
	for i := uint64(1); i < 512; i++ {
		table(pt)[i] = i<<pageShift | ptePresent | pteWrite
	}
	table(uintptr(table(pdpt)[0] &^ 0xfff))[0] = uint64(pt) | ptePresent | pteWrite
	writeCR3(pml4)
	return true
}

// walk returns the PTE slot for va, creating intermediate tables if create.
func walk(va uintptr, create bool) *uint64 {
	t := pml4
	for shift := uint(39); shift > 12; shift -= 9 {
		e := &table(t)[(va>>shift)&511]
		if *e&ptePresent == 0 {
			if !create {
				return nil
			}
			n, ok := allocFrame()
			if !ok {
				return nil
			}
			*e = uint64(n) | ptePresent | pteWrite
		}
		t = uintptr(*e & pteAddr)
	}
	return &table(t)[(va>>12)&511]
}

func pteFlags(prot uint32) uint64 {
	f := uint64(ptePresent)
	if prot&protWrite != 0 {
		f |= pteWrite
	}
	if haveNX && prot&protExec == 0 {
		f |= pteNX
	}
	return f
}

// unmapPages frees the frames backing [start, end) and clears their PTEs,
// skipping absent tables a whole table at a time.
func unmapPages(start, end uintptr) {
	flushAll := end-start > 64*pageSize
	cleared := false
	for va := start; va < end; {
		t := pml4
		skipped := false
		for shift := uint(39); shift > 12; shift -= 9 {
			e := table(t)[(va>>shift)&511]
			if e&ptePresent == 0 {
				next := (va + 1<<shift) &^ (1<<shift - 1)
				if next <= va {
					return
				}
				va = next
				skipped = true
				break
			}
			t = uintptr(e & pteAddr)
		}
		if skipped {
			continue
		}
		e := &table(t)[(va>>12)&511]
		if *e&ptePresent != 0 {
			freeFrame(uintptr(*e & pteAddr))
			*e = 0
			cleared = true
			if !flushAll {
				invlpg(va)
			}
		}
		va += pageSize
	}
	// Only a cleared entry can be cached: the runtime maps its heap with
	// MAP_FIXED over reservations it never touched, and a full TLB flush
	// for each of those cost ~200 us under TCG.
	if flushAll && cleared {
		writeCR3(pml4)
	}
}

// protectPages rewrites the PTE permissions of present pages in [start, end).
func protectPages(start, end uintptr, prot uint32) {
	for va := start; va < end; va += pageSize {
		e := walk(va, false)
		if e == nil || *e&ptePresent == 0 {
			continue
		}
		if prot == 0 {
			// PROT_NONE: keep the frame but make it absent; a later
			// mprotect or munmap finds it through the VMA's saved frames.
			// Simplest correct choice: drop the contents as Linux may not.
			freeFrame(uintptr(*e & pteAddr))
			*e = 0
		} else {
			*e = *e&pteAddr | pteFlags(prot)
		}
		invlpg(va)
	}
}

// VMAs: sorted, non-overlapping anonymous mappings.
type vma struct {
	start, end uintptr
	prot       uint32
}

const maxVMAs = 4096

var (
	vmas  [maxVMAs]vma
	nVMAs int
)

// findVMA returns the index of the VMA containing va, or -1.
func findVMA(va uintptr) int {
	lo, hi := 0, nVMAs
	for lo < hi {
		m := (lo + hi) / 2
		if vmas[m].end <= va {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < nVMAs && vmas[lo].start <= va {
		return lo
	}
	return -1
}

// removeRange cuts [start, end) out of the VMA list. It fails only when a
// split would overflow the table.
func removeRange(start, end uintptr) bool {
	for i := 0; i < nVMAs; i++ {
		v := &vmas[i]
		if v.end <= start || v.start >= end {
			continue
		}
		switch {
		case v.start >= start && v.end <= end:
			copy(vmas[i:nVMAs-1], vmas[i+1:nVMAs])
			nVMAs--
			i--
		case v.start < start && v.end > end:
			if nVMAs == maxVMAs {
				return false
			}
			copy(vmas[i+2:nVMAs+1], vmas[i+1:nVMAs])
			nVMAs++
			vmas[i+1] = vma{end, v.end, v.prot}
			v.end = start
		case v.start < start:
			v.end = start
		default:
			v.start = end
		}
	}
	return true
}

// insertVMA adds [start, end) (which must be free), merging with equal
// neighbours.
func insertVMA(start, end uintptr, prot uint32) bool {
	i := 0
	for i < nVMAs && vmas[i].start < start {
		i++
	}
	if i > 0 && vmas[i-1].end == start && vmas[i-1].prot == prot {
		vmas[i-1].end = end
		if i < nVMAs && vmas[i].start == end && vmas[i].prot == prot {
			vmas[i-1].end = vmas[i].end
			copy(vmas[i:nVMAs-1], vmas[i+1:nVMAs])
			nVMAs--
		}
		return true
	}
	if i < nVMAs && vmas[i].start == end && vmas[i].prot == prot {
		vmas[i].start = start
		return true
	}
	if nVMAs == maxVMAs {
		return false
	}
	copy(vmas[i+1:nVMAs+1], vmas[i:nVMAs])
	nVMAs++
	vmas[i] = vma{start, end, prot}
	return true
}

// rangeFree reports whether no VMA overlaps [start, end).
func rangeFree(start, end uintptr) bool {
	for i := 0; i < nVMAs; i++ {
		if vmas[i].start < end && vmas[i].end > start {
			return false
		}
	}
	return true
}

var mmapCursor uintptr = mmapStart

// findFree picks an address for a mapping of n bytes, top-down below
// mmapStart.
func findFree(n uintptr) uintptr {
	for tries := 0; tries < 2; tries++ {
		end := mmapCursor
		for end-n >= userBase && end > n {
			start := end - n
			// Find the highest VMA overlapping [start, end).
			conflict := -1
			for i := 0; i < nVMAs; i++ {
				if vmas[i].start < end && vmas[i].end > start {
					conflict = i
				}
			}
			if conflict < 0 {
				mmapCursor = start
				return start
			}
			end = vmas[conflict].start
		}
		mmapCursor = mmapStart
	}
	return 0
}

// oomReserve is kept free for the runtime's own fatal-error path: heap
// growth (MAP_FIXED read-write over a reservation, Go's sysMap) is refused
// with ENOMEM when it would eat into it, so Go reports "out of memory" itself.
func oomReserve() uint64 {
	r := totalFrames / 32
	if r < 512 {
		r = 512
	}
	return r
}

const (
	mapShared    = 0x01
	mapPrivate   = 0x02
	mapFixed     = 0x10
	mapAnonymous = 0x20
	mapNoreplace = 0x100000
)

func sysMmap(addr, length uintptr, prot, flags uint32, fd int64) uintptr {
	if length == 0 || addr&(pageSize-1) != 0 {
		return uintptr(errno(_EINVAL))
	}
	n := align(length, pageSize)
	if n < length || n >= userTop {
		return uintptr(errno(_ENOMEM))
	}
	if flags&mapAnonymous == 0 { // Linux ignores fd for anonymous mappings
		return uintptr(errno(_ENODEV))
	}
	if flags&mapFixed != 0 {
		if addr < userBase || addr+n > userTop || addr+n < addr {
			return uintptr(errno(_ENOMEM))
		}
		if prot&protWrite != 0 && !rangeFree(addr, addr+n) {
			if uint64(n/pageSize)+oomReserve() > freeFrames {
				return uintptr(errno(_ENOMEM))
			}
		}
		unmapPages(addr, addr+n)
		if !removeRange(addr, addr+n) || !insertVMA(addr, addr+n, prot) {
			return uintptr(errno(_ENOMEM))
		}
		return addr
	}
	if addr != 0 && addr >= userBase && addr+n <= userTop && addr+n > addr && rangeFree(addr, addr+n) {
		if !insertVMA(addr, addr+n, prot) {
			return uintptr(errno(_ENOMEM))
		}
		return addr
	}
	a := findFree(n)
	if a == 0 || !insertVMA(a, a+n, prot) {
		return uintptr(errno(_ENOMEM))
	}
	return a
}

func sysMunmap(addr, length uintptr) uintptr {
	if addr&(pageSize-1) != 0 || length == 0 {
		return uintptr(errno(_EINVAL))
	}
	n := align(length, pageSize)
	if addr < userBase || addr+n > userTop || addr+n < addr {
		return uintptr(errno(_EINVAL))
	}
	unmapPages(addr, addr+n)
	if !removeRange(addr, addr+n) {
		return uintptr(errno(_ENOMEM))
	}
	return 0
}

func sysMprotect(addr, length uintptr, prot uint32) uintptr {
	if addr&(pageSize-1) != 0 {
		return uintptr(errno(_EINVAL))
	}
	n := align(length, pageSize)
	if addr < userBase || addr+n > userTop || addr+n < addr {
		return uintptr(errno(_ENOMEM))
	}
	for va := addr; va < addr+n; {
		i := findVMA(va)
		if i < 0 {
			return uintptr(errno(_ENOMEM))
		}
		va = vmas[i].end
	}
	if !removeRange(addr, addr+n) || !insertVMA(addr, addr+n, prot) {
		return uintptr(errno(_ENOMEM))
	}
	protectPages(addr, addr+n, prot)
	return 0
}

const (
	madvNormal     = 0
	madvDontneed   = 4
	madvFree       = 8
	madvHugepage   = 14
	madvNohugepage = 15
	madvCollapse   = 25
)

func sysMadvise(addr, length uintptr, advice int) uintptr {
	if addr&(pageSize-1) != 0 {
		return uintptr(errno(_EINVAL))
	}
	n := align(length, pageSize)
	switch advice {
	case madvDontneed, madvFree:
		if addr >= userBase && addr+n <= userTop {
			unmapPages(addr, addr+n)
		}
		return 0
	case madvNormal, madvHugepage, madvNohugepage:
		return 0
	}
	return uintptr(errno(_EINVAL))
}

// Page-fault error code bits.
const (
	pfPresent = 1 << 0
	pfWrite   = 1 << 1
	pfFetch   = 1 << 4
)

// faultIn makes va present if a VMA allows the access. It returns 0 on
// success, or the SIGSEGV si_code to report.
func faultIn(va uintptr, write, fetch bool) int {
	i := findVMA(va)
	if i < 0 || vmas[i].prot == 0 {
		return segvMapErr
	}
	prot := vmas[i].prot
	if write && prot&protWrite == 0 || fetch && prot&protExec == 0 && haveNX {
		return segvAccErr
	}
	e := walk(va, true)
	if e == nil {
		outOfMemory(va)
	}
	if *e&ptePresent != 0 {
		return 0 // raced with another fault, or a stale TLB entry
	}
	pa, ok := allocFrame()
	if !ok {
		outOfMemory(va)
	}
	*e = uint64(pa) | pteFlags(prot)
	faultAround(e, va, vmas[i])
	return 0
}

// faultAroundBytes is the aligned window of a mapping that one demand-zero
// fault fills, as Linux's fault_around_bytes (64 KiB) does for file pages.
// A fault is a trap the program pays for each page it first touches; under
// the lab's Xen, where the kernel's read of CR2 is itself a VM exit, a
// fault cost ~100 us, and the runtime touches its heap and stacks a page
// after another. The window stays inside one page table (64 KiB divides 2
// MiB), so its entries are e's neighbours.
const faultAroundBytes = 64 << 10

// faultAround maps the absent pages of va's window in mapping m, whose
// entry for va is e, while memory is plentiful: never below the
// out-of-memory reserve, so that only pages a program touches can run the
// VM out of memory.
func faultAround(e *uint64, va uintptr, m vma) {
	const n = faultAroundBytes / pageSize
	if freeFrames < oomReserve()+n {
		return
	}
	va &^= pageSize - 1
	lo := max(va&^(faultAroundBytes-1), m.start)
	hi := min(va&^(faultAroundBytes-1)+faultAroundBytes, m.end)
	flags := pteFlags(m.prot)
	for p := lo; p < hi; p += pageSize {
		ne := (*uint64)(unsafe.Add(unsafe.Pointer(e), int(p-va)/pageSize*8))
		if *ne&ptePresent != 0 {
			continue
		}
		pa, ok := allocFrame()
		if !ok {
			return
		}
		*ne = uint64(pa) | flags
	}
}

const (
	segvMapErr = 1
	segvAccErr = 2
)

func outOfMemory(va uintptr) {
	kprint("fatal error: out of memory: no free page for the fault at ")
	kprintHex(uint64(va))
	kprint("\n")
	powerOff(2)
}

// userOK checks that [p, p+n) lies in mappings allowing the access and
// faults its pages in, so kernel code can then touch it directly.
func userOK(p, n uintptr, write bool) bool {
	if n == 0 {
		return true
	}
	end := p + n
	if end < p || p < pageSize {
		return false
	}
	if end <= identTop {
		// The image's own data (the initial stack lives in mmap space;
		// the runtime passes pointers into its BSS/data too).
		return true
	}
	if p < identTop {
		return false
	}
	for va := p &^ (pageSize - 1); va < end; va += pageSize {
		e := walk(va, false)
		if e != nil && *e&ptePresent != 0 && (!write || *e&pteWrite != 0) {
			continue
		}
		if faultIn(va, write, false) != 0 {
			return false
		}
	}
	return true
}

func userBytes(p, n uintptr) []byte {
	return unsafe.Slice((*byte)(ptr(p)), n)
}

// ptr converts a kernel address (identity-mapped physical memory, or a user
// address validated by userOK) to a pointer. Such memory is never Go heap
// memory, so the garbage collector's rules for uintptr conversions, which
// vet's unsafeptr check enforces, do not apply; this is the one place the
// conversion is written.
func ptr(p uintptr) unsafe.Pointer { return unsafe.Add(nil, p) }

// memmove8 copies n bytes (a multiple of 8) between kernel addresses.
// copy() on two slices made by userBytes with a constant length trips an
// internal compiler error in Go 1.26 (ssa.disjointTypes on pointers
// derived from unsafe.Add(nil, ...)), so fixed-size copies use this.
func memmove8(dst, src, n uintptr) {
	d := unsafe.Slice((*uint64)(ptr(dst)), n/8)
	s := unsafe.Slice((*uint64)(ptr(src)), n/8)
	for i := range d {
		d[i] = s[i]
	}
}

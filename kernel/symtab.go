package kernel

import "unsafe"

// A minimal reader of the binary's own pclntab (the Go 1.20+ format,
// runtime/symtab.go: pcHeader, functab, _func, pcvalue tables) so that a
// kernel fault can be reported as function and file:line without calling
// into the runtime, which may allocate.

const pclnMagic = 0xfffffff1

// Offsets in pcHeader and _func.
const (
	phNfunc          = 8
	phFuncnameOffset = 32
	phCuOffset       = 40
	phFiletabOffset  = 48
	phPctabOffset    = 56
	phPclnOffset     = 64

	fnEntryOff = 0
	fnNameOff  = 4
	fnPcsp     = 16
	fnPcfile   = 20
	fnPcln     = 24
	fnCuOffset = 32
)

func pclntabAddr() uintptr

func rd32(p uintptr) uint32 { return *(*uint32)(ptr(p)) }

type symtab struct {
	hdr, text               uintptr
	nfunc                   uint64
	names, cu, files, pctab uintptr
	functab                 uintptr
}

func loadSymtab() (s symtab, ok bool) {
	s.hdr = pclntabAddr()
	if rd32(s.hdr) != pclnMagic {
		return s, false
	}
	s.text, _ = textRange()
	s.nfunc = *(*uint64)(ptr(s.hdr + phNfunc))
	off := func(o uintptr) uintptr { return s.hdr + *(*uintptr)(ptr(s.hdr + o)) }
	s.names = off(phFuncnameOffset)
	s.cu = off(phCuOffset)
	s.files = off(phFiletabOffset)
	s.pctab = off(phPctabOffset)
	s.functab = off(phPclnOffset)
	return s, s.nfunc > 0 && s.nfunc < 1<<24
}

// findFunc returns the _func address for pc, or 0.
func (s *symtab) findFunc(pc uintptr) uintptr {
	if pc < s.text {
		return 0
	}
	rel := uint32(pc - s.text)
	lo, hi := uint64(0), s.nfunc // functab[i] = {entryoff, funcoff}; nfunc+1 entries
	if rel >= rd32(s.functab+uintptr(s.nfunc)*8) {
		return 0
	}
	for hi-lo > 1 {
		m := (lo + hi) / 2
		if rd32(s.functab+uintptr(m)*8) <= rel {
			lo = m
		} else {
			hi = m
		}
	}
	return s.functab + uintptr(rd32(s.functab+uintptr(lo)*8+4))
}

func cstring(p uintptr) string {
	n := 0
	for n < 1024 && *(*byte)(ptr(p + uintptr(n))) != 0 {
		n++
	}
	return unsafe.String((*byte)(ptr(p)), n)
}

func uvarint(p *uintptr) uint32 {
	var v uint32
	for shift := uint(0); shift < 35; shift += 7 {
		b := *(*byte)(ptr(*p))
		*p++
		v |= uint32(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	return v
}

// pcvalue decodes the table at pctab+off for pc (runtime.pcvalue).
func (s *symtab) pcvalue(f uintptr, off uint32, pc uintptr) int32 {
	if off == 0 {
		return -1
	}
	entry := s.text + uintptr(rd32(f+fnEntryOff))
	p := s.pctab + uintptr(off)
	val := int32(-1)
	cur := entry
	for i := 0; i < 1<<20; i++ {
		d := uvarint(&p)
		if d == 0 && cur != entry {
			break
		}
		val += int32(-(d & 1) ^ (d >> 1))
		cur += uintptr(uvarint(&p)) // PC quantum is 1 on amd64
		if pc < cur {
			return val
		}
	}
	return -1
}

// lookup returns the function name, file and line of pc.
func (s *symtab) lookup(pc uintptr) (name, file string, line int32, ok bool) {
	f := s.findFunc(pc)
	if f == 0 {
		return
	}
	name = cstring(s.names + uintptr(rd32(f+fnNameOff)))
	line = s.pcvalue(f, rd32(f+fnPcln), pc)
	if fileno := s.pcvalue(f, rd32(f+fnPcfile), pc); fileno >= 0 {
		fo := rd32(s.cu + uintptr(rd32(f+fnCuOffset)+uint32(fileno))*4)
		if fo != ^uint32(0) {
			file = cstring(s.files + uintptr(fo))
		}
	}
	return name, file, line, true
}

//go:build amd64

package vdso

import "unsafe"

// The image's strings. The dynamic string table is one constant; the str*
// constants are the names' offsets in it.
const (
	nameClockGettime  = "__vdso_clock_gettime"
	nameGettimeofday  = "__vdso_gettimeofday"
	nameClockGettimeW = "clock_gettime"
	nameGettimeofdayW = "gettimeofday"
	nameVersion       = "LINUX_2.6"
	nameSoname        = "linux-vdso.so.1"
	strClockGettime   = 1
	strGettimeofday   = strClockGettime + len(nameClockGettime) + 1
	strClockGettimeW  = strGettimeofday + len(nameGettimeofday) + 1
	strGettimeofdayW  = strClockGettimeW + len(nameClockGettimeW) + 1
	strVersion        = strGettimeofdayW + len(nameGettimeofdayW) + 1
	strSoname         = strVersion + len(nameVersion) + 1
	dynstr            = "\x00" + nameClockGettime + "\x00" + nameGettimeofday + "\x00" + nameClockGettimeW + "\x00" + nameGettimeofdayW + "\x00" + nameVersion + "\x00" + nameSoname + "\x00"
	shstrtab          = "\x00.hash\x00.dynsym\x00.dynstr\x00.gnu.version\x00.gnu.version_d\x00.dynamic\x00.text\x00.shstrtab\x00"
	shstrHash         = 1
	shstrDynsym       = shstrHash + len(".hash") + 1
	shstrDynstr       = shstrDynsym + len(".dynsym") + 1
	shstrVersym       = shstrDynstr + len(".dynstr") + 1
	shstrVerdef       = shstrVersym + len(".gnu.version") + 1
	shstrDynamic      = shstrVerdef + len(".gnu.version_d") + 1
	shstrText         = shstrDynamic + len(".dynamic") + 1
	shstrShstrtab     = shstrText + len(".text") + 1
	versionHash       = 0x3ae75f6 // ELF hash of LINUX_2.6, as the runtime has it
	versionIndex      = 2         // LINUX_2.6's index (1 is the file's own)
	numSyms           = 5         // null, the two functions, their weak aliases
	numBuckets        = 3
	numDyn            = 10
	numSections       = 9
	sectionText       = 7
	sectionShstrtab   = 8
	ehdrSize          = 64
	phdrSize          = 56
	symSize           = 24
	dynSize           = 16
	shdrSize          = 64
	verdefSize        = 20
	verdauxSize       = 8
	offPhdrs          = ehdrSize
	offHash           = offPhdrs + 2*phdrSize
	offDynsym         = (offHash + (2+numBuckets+numSyms)*4 + 7) &^ 7
	offDynstr         = offDynsym + numSyms*symSize
	offVersym         = (offDynstr + len(dynstr) + 1) &^ 1
	offVerdef         = (offVersym + 2*numSyms + 7) &^ 7
	offDynamic        = (offVerdef + 2*(verdefSize+verdauxSize) + 7) &^ 7
	offShstrtab       = offDynamic + numDyn*dynSize
	offShdrs          = (offShstrtab + len(shstrtab) + 7) &^ 7
	imageLen          = offShdrs + numSections*shdrSize
	imageBytes        = 4096
)

const _ = uint(imageBytes - imageLen) // the image fits

// ELF constants.
const (
	etDyn         = 3
	emX86_64      = 62
	ptLoad        = 1
	ptDynamic     = 2
	dtNull        = 0
	dtHash        = 4
	dtStrtab      = 5
	dtSymtab      = 6
	dtStrsz       = 10
	dtSyment      = 11
	dtSoname      = 14
	dtVersym      = 0x6ffffff0
	dtVerdef      = 0x6ffffffc
	dtVerdefnum   = 0x6ffffffd
	shtStrtab     = 3
	shtHash       = 5
	shtDynamic    = 6
	shtNobits     = 8
	shtDynsym     = 11
	shtGnuVerdef  = 0x6ffffffd
	shtGnuVersym  = 0x6fffffff
	shfWrite      = 1
	shfAlloc      = 2
	shfExecinstr  = 4
	stbGlobalFunc = 1<<4 | 2
	stbWeakFunc   = 2<<4 | 2
	verFlgBase    = 1
)

// image holds the vDSO image (uint64s: 8-byte aligned).
var image [imageBytes / 8]uint64

type imageBuf = [imageBytes]byte

func put16(b *imageBuf, off int, v uint16) {
	b[off] = byte(v)
	b[off+1] = byte(v >> 8)
}

func put32(b *imageBuf, off int, v uint32) {
	for i := 0; i < 4; i++ {
		b[off+i] = byte(v >> (8 * i))
	}
}

func put64(b *imageBuf, off int, v uint64) {
	for i := 0; i < 8; i++ {
		b[off+i] = byte(v >> (8 * i))
	}
}

func putString(b *imageBuf, off int, s string) {
	for i := 0; i < len(s); i++ {
		b[off+i] = s[i]
	}
}

// elfHash is the System V ABI's symbol hash of the NUL-terminated name at
// b[off:].
func elfHash(b *imageBuf, off int) uint32 {
	var h uint32
	for ; off < len(b) && b[off] != 0; off++ {
		h = h<<4 + uint32(b[off])
		g := h & 0xf0000000
		if g != 0 {
			h ^= g >> 24
		}
		h &^= g
	}
	return h
}

func putPhdr(b *imageBuf, off int, typ, flags uint32, at, size, align int) {
	put32(b, off, typ)
	put32(b, off+4, flags)
	put64(b, off+8, uint64(at))  // p_offset
	put64(b, off+16, uint64(at)) // p_vaddr
	put64(b, off+24, uint64(at)) // p_paddr
	put64(b, off+32, uint64(size))
	put64(b, off+40, uint64(size))
	put64(b, off+48, uint64(align))
}

func putSym(b *imageBuf, i, name int, info byte, shndx uint16, value uint64) {
	off := offDynsym + i*symSize
	put32(b, off, uint32(name))
	b[off+4] = info
	b[off+5] = 0 // STV_DEFAULT
	put16(b, off+6, shndx)
	put64(b, off+8, value)
	put64(b, off+16, 0) // size unknown
}

func putDyn(b *imageBuf, i, tag, val int) {
	put64(b, offDynamic+i*dynSize, uint64(tag))
	put64(b, offDynamic+i*dynSize+8, uint64(val))
}

func putShdr(b *imageBuf, i, name int, typ uint32, flags, at, size uint64, link, info uint32, align, entsize uint64) {
	off := offShdrs + i*shdrSize
	put32(b, off, uint32(name))
	put32(b, off+4, typ)
	put64(b, off+8, flags)
	put64(b, off+16, at) // sh_addr
	if typ == shtNobits {
		at = 0
	}
	put64(b, off+24, at) // sh_offset
	put64(b, off+32, size)
	put32(b, off+40, link)
	put32(b, off+44, info)
	put64(b, off+48, align)
	put64(b, off+56, entsize)
}

func putVerdef(b *imageBuf, off int, flags, ndx uint16, name int, next uint32) {
	put16(b, off, 1) // vd_version
	put16(b, off+2, flags)
	put16(b, off+4, ndx)
	put16(b, off+6, 1) // vd_cnt
	put32(b, off+8, elfHash(b, offDynstr+name))
	put32(b, off+12, verdefSize) // vd_aux: the verdaux follows
	put32(b, off+16, next)
	put32(b, off+verdefSize, uint32(name)) // vda_name
	put32(b, off+verdefSize+4, 0)          // vda_next
}

// Build writes the vDSO image and returns its address, the value of the
// auxiliary vector's AT_SYSINFO_EHDR (33). It runs before the Go runtime
// starts: it allocates nothing and calls no runtime service. Calling it
// again writes the same image.
func Build() uintptr {
	for i := range image {
		image[i] = 0
	}
	b := (*imageBuf)(unsafe.Pointer(&image))
	base := uintptr(unsafe.Pointer(&image))

	// ELF header.
	putString(b, 0, "\x7fELF")
	b[4] = 2 // ELFCLASS64
	b[5] = 1 // ELFDATA2LSB
	b[6] = 1 // EV_CURRENT
	put16(b, 16, etDyn)
	put16(b, 18, emX86_64)
	put32(b, 20, 1)                // e_version
	put64(b, 24, 0)                // e_entry
	put64(b, 32, uint64(offPhdrs)) // e_phoff
	put64(b, 40, uint64(offShdrs)) // e_shoff
	put32(b, 48, 0)                // e_flags
	put16(b, 52, ehdrSize)
	put16(b, 54, phdrSize)
	put16(b, 56, 2)
	put16(b, 58, shdrSize)
	put16(b, 60, numSections)
	put16(b, 62, sectionShstrtab)

	// One PT_LOAD at vaddr 0 over the whole image, so that the runtime's
	// load offset is the image's address; PT_DYNAMIC.
	putPhdr(b, offPhdrs, ptLoad, 5 /* R+X */, 0, imageLen, 4096)
	putPhdr(b, offPhdrs+phdrSize, ptDynamic, 4 /* R */, offDynamic, numDyn*dynSize, 8)

	putString(b, offDynstr, dynstr)
	putString(b, offShstrtab, shstrtab)

	// Symbols: values are the functions' distance from the image, modulo
	// 2^64.
	cg := uint64(clockGettimeAddr() - base)
	gt := uint64(gettimeofdayAddr() - base)
	names := [numSyms]int{0, strClockGettime, strGettimeofday, strClockGettimeW, strGettimeofdayW}
	putSym(b, 1, names[1], stbGlobalFunc, sectionText, cg)
	putSym(b, 2, names[2], stbGlobalFunc, sectionText, gt)
	putSym(b, 3, names[3], stbWeakFunc, sectionText, cg)
	putSym(b, 4, names[4], stbWeakFunc, sectionText, gt)

	// DT_HASH: nbucket, nchain, the buckets, the chains.
	put32(b, offHash, numBuckets)
	put32(b, offHash+4, numSyms)
	var heads [numBuckets]uint32
	for i := 1; i < numSyms; i++ {
		h := elfHash(b, offDynstr+names[i]) % numBuckets
		put32(b, offHash+8+4*numBuckets+4*i, heads[h]) // chain[i]
		heads[h] = uint32(i)
	}
	for i, s := range heads {
		put32(b, offHash+8+4*i, s)
	}

	// Versions: every symbol is LINUX_2.6; the file's own definition
	// comes first.
	for i := 1; i < numSyms; i++ {
		put16(b, offVersym+2*i, versionIndex)
	}
	putVerdef(b, offVerdef, verFlgBase, 1, strSoname, verdefSize+verdauxSize)
	putVerdef(b, offVerdef+verdefSize+verdauxSize, 0, versionIndex, strVersion, 0)

	putDyn(b, 0, dtHash, offHash)
	putDyn(b, 1, dtStrtab, offDynstr)
	putDyn(b, 2, dtSymtab, offDynsym)
	putDyn(b, 3, dtStrsz, len(dynstr))
	putDyn(b, 4, dtSyment, symSize)
	putDyn(b, 5, dtVersym, offVersym)
	putDyn(b, 6, dtVerdef, offVerdef)
	putDyn(b, 7, dtVerdefnum, 2)
	putDyn(b, 8, dtSoname, strSoname)
	putDyn(b, 9, dtNull, 0)

	// Section headers, for tools (the runtime reads none). .text holds
	// no bytes: it only gives the symbols a defined section, at the
	// lower function's address.
	lo := cg
	if gt-lo > 1<<63 { // gt below cg (modulo 2^64)
		lo = gt
	}
	putShdr(b, 1, shstrHash, shtHash, shfAlloc, uint64(offHash), (2+numBuckets+numSyms)*4, 2, 0, 8, 4)
	putShdr(b, 2, shstrDynsym, shtDynsym, shfAlloc, uint64(offDynsym), numSyms*symSize, 3, 1, 8, symSize)
	putShdr(b, 3, shstrDynstr, shtStrtab, shfAlloc, uint64(offDynstr), uint64(len(dynstr)), 0, 0, 1, 0)
	putShdr(b, 4, shstrVersym, shtGnuVersym, shfAlloc, uint64(offVersym), 2*numSyms, 2, 0, 2, 2)
	putShdr(b, 5, shstrVerdef, shtGnuVerdef, shfAlloc, uint64(offVerdef), 2*(verdefSize+verdauxSize), 3, 2, 8, 0)
	putShdr(b, 6, shstrDynamic, shtDynamic, shfAlloc|shfWrite, uint64(offDynamic), numDyn*dynSize, 3, 0, 8, dynSize)
	putShdr(b, sectionText, shstrText, shtNobits, shfAlloc|shfExecinstr, lo, 0, 0, 0, 16, 0)
	putShdr(b, sectionShstrtab, shstrShstrtab, shtStrtab, 0, uint64(offShstrtab), uint64(len(shstrtab)), 0, 0, 1, 0)
	return base
}

// Size is the length of the image Build writes.
const Size = uintptr(imageLen)

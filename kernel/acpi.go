package kernel

import "github.com/unikgo/unikgo/x86"

// ACPI S5 (soft-off), the power-off of last resort on QEMU without
// isa-debug-exit: find the FADT through the RSDP the boot loader passed,
// read PM1a_CNT_BLK, find SLP_TYPa in the DSDT's \_S5 package, and write
// SLP_TYPa | SLP_EN (ACPI 6.4, 4.8.3.2.1 and 7.4.2).

var rsdpPA uintptr

func phys8(pa uintptr) uint8   { return *(*uint8)(ptr(pa)) }
func phys16(pa uintptr) uint16 { return *(*uint16)(ptr(pa)) }
func phys32(pa uintptr) uint32 { return *(*uint32)(ptr(pa)) }
func phys64(pa uintptr) uint64 { return *(*uint64)(ptr(pa)) }

func sigIs(pa uintptr, s string) bool {
	for i := 0; i < len(s); i++ {
		if phys8(pa+uintptr(i)) != s[i] {
			return false
		}
	}
	return true
}

// physOK bounds every table access to the identity-mapped low 4 GiB.
func physOK(pa, n uintptr) bool { return pa >= pageSize && pa+n > pa && pa+n <= 1<<32 }

func findFADT() uintptr {
	if rsdpPA == 0 || !physOK(rsdpPA, 36) || !sigIs(rsdpPA, "RSD PTR ") {
		return 0
	}
	var root uintptr
	entry := uintptr(4)
	if phys8(rsdpPA+15) >= 2 && phys64(rsdpPA+24) != 0 {
		root, entry = uintptr(phys64(rsdpPA+24)), 8
	} else {
		root = uintptr(phys32(rsdpPA + 16))
	}
	if !physOK(root, 36) {
		return 0
	}
	n := (uintptr(phys32(root+4)) - 36) / entry
	if n > 64 {
		n = 64
	}
	for i := uintptr(0); i < n; i++ {
		var t uintptr
		if entry == 8 {
			t = uintptr(phys64(root + 36 + i*8))
		} else {
			t = uintptr(phys32(root + 36 + i*4))
		}
		if physOK(t, 148) && sigIs(t, "FACP") {
			return t
		}
	}
	return 0
}

func acpiPowerOff() {
	fadt := findFADT()
	if fadt == 0 {
		return
	}
	pm1a := uint16(phys32(fadt + 64))
	dsdt := uintptr(phys32(fadt + 40))
	if phys32(fadt+4) >= 148 && phys64(fadt+140) != 0 {
		dsdt = uintptr(phys64(fadt + 140))
	}
	if pm1a == 0 || !physOK(dsdt, 36) {
		return
	}
	size := uintptr(phys32(dsdt + 4))
	if size > 1<<20 || !physOK(dsdt, size) {
		return
	}
	for p := dsdt + 36; p+8 < dsdt+size; p++ {
		if !sigIs(p, "_S5_") || phys8(p+4) != 0x12 { // PackageOp
			continue
		}
		q := p + 5
		q += uintptr(phys8(q)>>6) + 1 // PkgLength
		q++                           // NumElements
		typ := phys8(q)
		if typ == 0x0a { // BytePrefix
			typ = phys8(q + 1)
		}
		x86.OutW(pm1a, uint16(typ&7)<<10|1<<13)
		return
	}
}

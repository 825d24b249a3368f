//go:build amd64 && linux

package vdso

import (
	"bytes"
	"debug/elf"
	"reflect"
	"testing"
	"unsafe"
)

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.UnsafePointer, reflect.Map, reflect.Slice, reflect.String,
		reflect.Chan, reflect.Func, reflect.Interface:
		return true
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}

func imageSlice() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&image)), Size)
}

func TestOffsets(t *testing.T) {
	var d data
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"seq", unsafe.Offsetof(d.seq), offSeq},
		{"mode", unsafe.Offsetof(d.mode), offMode},
		{"tscBase", unsafe.Offsetof(d.tscBase), offTSCBase},
		{"tscMult", unsafe.Offsetof(d.tscMult), offTSCMult},
		{"wallBase", unsafe.Offsetof(d.wallBase), offWallBase},
		{"xenInfo", unsafe.Offsetof(d.xenInfo), offXenInfo},
		{"xenSysOff", unsafe.Offsetof(d.xenSysOff), offXenSysOff},
		{"xenLast", unsafe.Offsetof(d.xenLast), offXenLast},
		{"size", unsafe.Sizeof(d), 128},
	} {
		if c.got != c.want {
			t.Errorf("offset of %s = %d, vdso_amd64.s has %d", c.name, c.got, c.want)
		}
	}
	if hasPointers(reflect.TypeFor[data]()) {
		t.Errorf("the data block holds pointers")
	}
	if uintptr(unsafe.Pointer(&image))%8 != 0 {
		t.Errorf("image at %p is not 8-byte aligned", &image)
	}
}

// The hashes the runtime's vdsoSymbolKeys and vdsoLinuxVersion hold.
func TestHashes(t *testing.T) {
	var b imageBuf
	for _, c := range []struct {
		name string
		sysv uint32
		gnu  uint32
	}{
		{"__vdso_gettimeofday", 0x315ca59, 0xb01bca00},
		{"__vdso_clock_gettime", 0xd35ec75, 0x6e43a318},
		{"__vdso_getrandom", 0x25425d, 0x84a559bf},
		{"LINUX_2.6", 0x3ae75f6, 0},
	} {
		putString(&b, 8, c.name+"\x00")
		if h := elfHash(&b, 8); h != c.sysv {
			t.Errorf("elfHash(%q) = %#x, want %#x", c.name, h, c.sysv)
		}
		if c.gnu != 0 {
			if h := gnuHash(c.name); h != c.gnu {
				t.Errorf("gnuHash(%q) = %#x, want %#x", c.name, h, c.gnu)
			}
		}
	}
}

func gnuHash(s string) uint32 {
	h := uint32(5381)
	for i := 0; i < len(s); i++ {
		h = h*33 + uint32(s[i])
	}
	return h
}

func TestBuildDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Build() }); n != 0 {
		t.Errorf("Build allocates %v times per run", n)
	}
}

func TestDebugELF(t *testing.T) {
	base := Build()
	if base != uintptr(unsafe.Pointer(&image)) {
		t.Fatalf("Build returned %#x, image is at %p", base, &image)
	}
	f, err := elf.NewFile(bytes.NewReader(imageSlice()))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Type != elf.ET_DYN || f.Machine != elf.EM_X86_64 {
		t.Errorf("header: %v %v %v %v", f.Class, f.Data, f.Type, f.Machine)
	}
	if len(f.Progs) != 2 {
		t.Fatalf("%d program headers, want 2", len(f.Progs))
	}
	if p := f.Progs[0]; p.Type != elf.PT_LOAD || p.Off != 0 || p.Vaddr != 0 || p.Filesz != uint64(Size) || p.Memsz != uint64(Size) {
		t.Errorf("PT_LOAD: %+v", p.ProgHeader)
	}
	if p := f.Progs[1]; p.Type != elf.PT_DYNAMIC || p.Off != uint64(offDynamic) || p.Vaddr != uint64(offDynamic) || p.Filesz != numDyn*dynSize {
		t.Errorf("PT_DYNAMIC: %+v", p.ProgHeader)
	}
	if s := f.Section(".dynamic"); s == nil || s.Offset != f.Progs[1].Off {
		t.Errorf(".dynamic section %+v", s)
	}
	if so, err := f.DynString(elf.DT_SONAME); err != nil || len(so) != 1 || so[0] != "linux-vdso.so.1" {
		t.Errorf("DT_SONAME = %q, %v", so, err)
	}
	for _, c := range []struct {
		tag  elf.DynTag
		want uint64
	}{
		{elf.DT_HASH, offHash}, {elf.DT_STRTAB, offDynstr}, {elf.DT_SYMTAB, offDynsym},
		{elf.DT_VERSYM, uint64(offVersym)}, {elf.DT_VERDEF, uint64(offVerdef)}, {elf.DT_VERDEFNUM, 2},
		{elf.DT_SYMENT, symSize},
	} {
		if v, err := f.DynValue(c.tag); err != nil || len(v) != 1 || v[0] != c.want {
			t.Errorf("%v = %v, %v; want %#x", c.tag, v, err, c.want)
		}
	}
	vers, err := f.DynamicVersions()
	if err != nil {
		t.Fatal(err)
	}
	if len(vers) != 2 || vers[0].Name != "linux-vdso.so.1" || vers[0].Flags != elf.VER_FLG_BASE || vers[0].Index != 1 ||
		vers[1].Name != "LINUX_2.6" || vers[1].Index != 2 || vers[1].Flags != 0 {
		t.Errorf("versions: %+v", vers)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uintptr{
		"__vdso_clock_gettime": clockGettimeAddr(),
		"__vdso_gettimeofday":  gettimeofdayAddr(),
		"clock_gettime":        clockGettimeAddr(),
		"gettimeofday":         gettimeofdayAddr(),
	}
	if len(syms) != len(want) {
		t.Errorf("%d dynamic symbols, want %d", len(syms), len(want))
	}
	for _, s := range syms {
		addr, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected symbol %q", s.Name)
			continue
		}
		delete(want, s.Name)
		if got := base + uintptr(s.Value); got != addr {
			t.Errorf("%s: base+value = %#x, function at %#x", s.Name, got, addr)
		}
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section != sectionText {
			t.Errorf("%s: type %v, section %v", s.Name, elf.ST_TYPE(s.Info), s.Section)
		}
		if bind := elf.ST_BIND(s.Info); bind != elf.STB_GLOBAL && bind != elf.STB_WEAK {
			t.Errorf("%s: binding %v", s.Name, bind)
		}
		if !s.HasVersion || s.Version != "LINUX_2.6" {
			t.Errorf("%s: version %v %q", s.Name, s.HasVersion, s.Version)
		}
	}
	for n := range want {
		t.Errorf("symbol %s missing", n)
	}
	t.Logf("image at %#x, __vdso_clock_gettime at %#x (symbol value %#x)", base, clockGettimeAddr(), uint64(clockGettimeAddr()-base))
}

// The runtime's lookup (runtime/vdso_linux.go, vdso_linux_amd64.go and
// vdso_elf64.go of Go 1.26), copied with its structure kept; only the
// runtime's helpers (add, gostringnocopy) are replaced.

const (
	_AT_SYSINFO_EHDR = 33

	_PT_LOAD    = 1
	_PT_DYNAMIC = 2

	_DT_NULL     = 0
	_DT_HASH     = 4
	_DT_STRTAB   = 5
	_DT_SYMTAB   = 6
	_DT_GNU_HASH = 0x6ffffef5
	_DT_VERSYM   = 0x6ffffff0
	_DT_VERDEF   = 0x6ffffffc

	_VER_FLG_BASE = 0x1
	_SHN_UNDEF    = 0
	_STT_FUNC     = 2
	_STT_NOTYPE   = 0
	_STB_GLOBAL   = 1
	_STB_WEAK     = 2
	_EI_NIDENT    = 16

	vdsoArrayMax       = 1<<50 - 1
	vdsoSymTabSize     = vdsoArrayMax / unsafe.Sizeof(elfSym{})
	vdsoDynSize        = vdsoArrayMax / unsafe.Sizeof(elfDyn{})
	vdsoSymStringsSize = vdsoArrayMax
	vdsoVerSymSize     = vdsoArrayMax / 2
	vdsoHashSize       = vdsoArrayMax / 4
	vdsoBloomSizeScale = unsafe.Sizeof(uintptr(0)) / 4
)

func _ELF_ST_BIND(val byte) byte { return val >> 4 }
func _ELF_ST_TYPE(val byte) byte { return val & 0xf }

type elfSym struct {
	st_name  uint32
	st_info  byte
	st_other byte
	st_shndx uint16
	st_value uint64
	st_size  uint64
}

type elfVerdef struct {
	vd_version uint16
	vd_flags   uint16
	vd_ndx     uint16
	vd_cnt     uint16
	vd_hash    uint32
	vd_aux     uint32
	vd_next    uint32
}

type elfEhdr struct {
	e_ident     [_EI_NIDENT]byte
	e_type      uint16
	e_machine   uint16
	e_version   uint32
	e_entry     uint64
	e_phoff     uint64
	e_shoff     uint64
	e_flags     uint32
	e_ehsize    uint16
	e_phentsize uint16
	e_phnum     uint16
	e_shentsize uint16
	e_shnum     uint16
	e_shstrndx  uint16
}

type elfPhdr struct {
	p_type   uint32
	p_flags  uint32
	p_offset uint64
	p_vaddr  uint64
	p_paddr  uint64
	p_filesz uint64
	p_memsz  uint64
	p_align  uint64
}

type elfDyn struct {
	d_tag int64
	d_val uint64
}

type elfVerdaux struct {
	vda_name uint32
	vda_next uint32
}

type vdsoSymbolKey struct {
	name    string
	symHash uint32
	gnuHash uint32
	ptr     *uintptr
}

type vdsoVersionKey struct {
	version string
	verHash uint32
}

type vdsoInfo struct {
	valid      bool
	loadAddr   uintptr
	loadOffset uintptr
	symtab     *[vdsoSymTabSize]elfSym
	symstrings *[vdsoSymStringsSize]byte
	chain      []uint32
	bucket     []uint32
	symOff     uint32
	isGNUHash  bool
	versym     *[vdsoVerSymSize]uint16
	verdef     *elfVerdef
}

var vdsoLinuxVersion = vdsoVersionKey{"LINUX_2.6", 0x3ae75f6}

var (
	vdsoGettimeofdaySym uintptr
	vdsoClockgettimeSym uintptr
	vdsoGetrandomSym    uintptr
)

var vdsoSymbolKeys = []vdsoSymbolKey{
	{"__vdso_gettimeofday", 0x315ca59, 0xb01bca00, &vdsoGettimeofdaySym},
	{"__vdso_clock_gettime", 0xd35ec75, 0x6e43a318, &vdsoClockgettimeSym},
	{"__vdso_getrandom", 0x25425d, 0x84a559bf, &vdsoGetrandomSym},
}

var vdsoLoadStart, vdsoLoadEnd uintptr

// ptrAt stands for the runtime's uintptr-to-pointer conversions.
func ptrAt(a uintptr) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(nil), a) }

func add(p unsafe.Pointer, x uintptr) unsafe.Pointer { return unsafe.Add(p, x) }

func gostringnocopy(p *byte) string {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return unsafe.String(p, n)
}

func vdsoInitFromSysinfoEhdr(info *vdsoInfo, hdr *elfEhdr) {
	info.valid = false
	info.loadAddr = uintptr(unsafe.Pointer(hdr))

	pt := ptrAt(info.loadAddr + uintptr(hdr.e_phoff))

	var foundVaddr bool
	var dyn *[vdsoDynSize]elfDyn
	for i := uint16(0); i < hdr.e_phnum; i++ {
		pt := (*elfPhdr)(add(pt, uintptr(i)*unsafe.Sizeof(elfPhdr{})))
		switch pt.p_type {
		case _PT_LOAD:
			if !foundVaddr {
				foundVaddr = true
				info.loadOffset = info.loadAddr + uintptr(pt.p_offset-pt.p_vaddr)
				vdsoLoadStart = info.loadOffset
				vdsoLoadEnd = info.loadOffset + uintptr(pt.p_memsz)
			}

		case _PT_DYNAMIC:
			dyn = (*[vdsoDynSize]elfDyn)(ptrAt(info.loadAddr + uintptr(pt.p_offset)))
		}
	}

	if !foundVaddr || dyn == nil {
		return
	}

	var hash, gnuhash *[vdsoHashSize]uint32
	info.symstrings = nil
	info.symtab = nil
	info.versym = nil
	info.verdef = nil
	for i := 0; dyn[i].d_tag != _DT_NULL; i++ {
		dt := &dyn[i]
		p := info.loadOffset + uintptr(dt.d_val)
		switch dt.d_tag {
		case _DT_STRTAB:
			info.symstrings = (*[vdsoSymStringsSize]byte)(ptrAt(p))
		case _DT_SYMTAB:
			info.symtab = (*[vdsoSymTabSize]elfSym)(ptrAt(p))
		case _DT_HASH:
			hash = (*[vdsoHashSize]uint32)(ptrAt(p))
		case _DT_GNU_HASH:
			gnuhash = (*[vdsoHashSize]uint32)(ptrAt(p))
		case _DT_VERSYM:
			info.versym = (*[vdsoVerSymSize]uint16)(ptrAt(p))
		case _DT_VERDEF:
			info.verdef = (*elfVerdef)(ptrAt(p))
		}
	}

	if info.symstrings == nil || info.symtab == nil || (hash == nil && gnuhash == nil) {
		return
	}

	if info.verdef == nil {
		info.versym = nil
	}

	if gnuhash != nil {
		nbucket := gnuhash[0]
		info.symOff = gnuhash[1]
		bloomSize := gnuhash[2]
		info.bucket = gnuhash[4+bloomSize*uint32(vdsoBloomSizeScale):][:nbucket]
		info.chain = gnuhash[4+bloomSize*uint32(vdsoBloomSizeScale)+nbucket:]
		info.isGNUHash = true
	} else {
		nbucket := hash[0]
		nchain := hash[1]
		info.bucket = hash[2 : 2+nbucket]
		info.chain = hash[2+nbucket : 2+nbucket+nchain]
	}

	info.valid = true
}

func vdsoFindVersion(info *vdsoInfo, ver *vdsoVersionKey) int32 {
	if !info.valid {
		return 0
	}

	def := info.verdef
	for {
		if def.vd_flags&_VER_FLG_BASE == 0 {
			aux := (*elfVerdaux)(add(unsafe.Pointer(def), uintptr(def.vd_aux)))
			if def.vd_hash == ver.verHash && ver.version == gostringnocopy(&info.symstrings[aux.vda_name]) {
				return int32(def.vd_ndx & 0x7fff)
			}
		}

		if def.vd_next == 0 {
			break
		}
		def = (*elfVerdef)(add(unsafe.Pointer(def), uintptr(def.vd_next)))
	}

	return -1
}

func vdsoParseSymbols(info *vdsoInfo, version int32) {
	if !info.valid {
		return
	}

	apply := func(symIndex uint32, k vdsoSymbolKey) bool {
		sym := &info.symtab[symIndex]
		typ := _ELF_ST_TYPE(sym.st_info)
		bind := _ELF_ST_BIND(sym.st_info)
		if typ != _STT_FUNC && typ != _STT_NOTYPE || bind != _STB_GLOBAL && bind != _STB_WEAK || sym.st_shndx == _SHN_UNDEF {
			return false
		}
		if k.name != gostringnocopy(&info.symstrings[sym.st_name]) {
			return false
		}
		if info.versym != nil && version != 0 && int32(info.versym[symIndex]&0x7fff) != version {
			return false
		}

		*k.ptr = info.loadOffset + uintptr(sym.st_value)
		return true
	}

	if !info.isGNUHash {
		for _, k := range vdsoSymbolKeys {
			if len(info.bucket) > 0 {
				for chain := info.bucket[k.symHash%uint32(len(info.bucket))]; chain != 0; chain = info.chain[chain] {
					if apply(chain, k) {
						break
					}
				}
			}
		}
		return
	}

	for _, k := range vdsoSymbolKeys {
		symIndex := info.bucket[k.gnuHash%uint32(len(info.bucket))]
		if symIndex < info.symOff {
			continue
		}
		for ; ; symIndex++ {
			hash := info.chain[symIndex-info.symOff]
			if hash|1 == k.gnuHash|1 {
				if apply(symIndex, k) {
					break
				}
			}
			if hash&1 != 0 {
				break
			}
		}
	}
}

func vdsoauxv(tag, val uintptr) (version int32, valid bool) {
	switch tag {
	case _AT_SYSINFO_EHDR:
		if val == 0 {
			return
		}
		var info vdsoInfo
		vdsoInitFromSysinfoEhdr(&info, (*elfEhdr)(ptrAt(val)))
		version = vdsoFindVersion(&info, &vdsoLinuxVersion)
		vdsoParseSymbols(&info, version)
		return version, info.valid
	}
	return
}

func TestRuntimeLookup(t *testing.T) {
	vdsoGettimeofdaySym, vdsoClockgettimeSym, vdsoGetrandomSym = 0, 0, 0
	base := Build()
	version, valid := vdsoauxv(_AT_SYSINFO_EHDR, base)
	if !valid || version != versionIndex {
		t.Fatalf("runtime parser: valid %v, LINUX_2.6 index %d", valid, version)
	}
	if vdsoClockgettimeSym != clockGettimeAddr() {
		t.Errorf("__vdso_clock_gettime resolved to %#x, function at %#x", vdsoClockgettimeSym, clockGettimeAddr())
	}
	if vdsoGettimeofdaySym != gettimeofdayAddr() {
		t.Errorf("__vdso_gettimeofday resolved to %#x, function at %#x", vdsoGettimeofdaySym, gettimeofdayAddr())
	}
	if vdsoGetrandomSym != 0 {
		t.Errorf("__vdso_getrandom resolved to %#x; there is none", vdsoGetrandomSym)
	}
	if vdsoLoadStart != base || vdsoLoadEnd != base+Size {
		t.Errorf("inVDSOPage range [%#x, %#x), image [%#x, %#x)", vdsoLoadStart, vdsoLoadEnd, base, base+Size)
	}
}

// A symbol of another version, or one the version table marks otherwise,
// must not resolve: the check that the version table is read.
func TestRuntimeLookupChecksVersion(t *testing.T) {
	base := Build()
	b := (*imageBuf)(unsafe.Pointer(&image))
	for i := 1; i < numSyms; i++ {
		put16(b, offVersym+2*i, 1)
	}
	vdsoGettimeofdaySym, vdsoClockgettimeSym, vdsoGetrandomSym = 0, 0, 0
	vdsoauxv(_AT_SYSINFO_EHDR, base)
	if vdsoClockgettimeSym != 0 {
		t.Errorf("resolved a symbol of the wrong version")
	}
	Build()
}

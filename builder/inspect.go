package builder

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/unikgo/unikgo/builder/pvhnote"
)

// Inspection describes an image for `unikbuild inspect`.
type Inspection struct {
	Path string
	Size int64
	pvhnote.Info
	// Sections maps the main sections (.text, .rodata, .data, .bss, ...)
	// to their sizes in memory.
	Sections []Section
	// GoVersion, MainPath and MainModule come from the Go build info.
	GoVersion  string
	MainPath   string
	MainModule string
	// KernelLinked reports whether the kernel package is in the image (its
	// function names are in the PC table even when stripped);
	// KernelVersion is the version of the module that provided it.
	KernelLinked  bool
	KernelVersion string
	// DefaultCmdline is the command line set with --cmdline, used by the
	// kernel when the boot loader passes none; read from the symbol table,
	// so it is empty for stripped images.
	DefaultCmdline string
}

// Section is one allocated ELF section.
type Section struct {
	Name string
	Size uint64
}

// Inspect reads and validates a unikgo image.
func Inspect(path string) (*Inspection, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inspect: %v", err)
	}
	info, err := pvhnote.Read(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	in := &Inspection{Path: path, Size: int64(len(b)), Info: *info}
	if f, err := elf.NewFile(bytes.NewReader(b)); err == nil {
		for _, s := range f.Sections {
			if s.Flags&elf.SHF_ALLOC != 0 && s.Size > 0 {
				in.Sections = append(in.Sections, Section{s.Name, s.Size})
			}
		}
		in.DefaultCmdline = stringVar(f, CmdlineVar)
	}
	if bi, err := buildinfo.Read(bytes.NewReader(b)); err == nil {
		in.GoVersion, in.MainPath, in.MainModule = bi.GoVersion, bi.Path, bi.Main.Path
		if bi.Main.Path == ModulePath {
			in.KernelVersion = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == ModulePath {
				in.KernelVersion = d.Version
				if d.Replace != nil {
					in.KernelVersion += " => " + d.Replace.Path + " " + d.Replace.Version
				}
			}
		}
	}
	in.KernelLinked = bytes.Contains(b, []byte(KernelPackage+"."))
	return in, nil
}

// stringVar returns the value of the Go string variable name from an
// unstripped image, or "" if it cannot be found.
func stringVar(f *elf.File, name string) string {
	syms, err := f.Symbols()
	if err != nil {
		return ""
	}
	for _, s := range syms {
		if s.Name != name || s.Size != 16 {
			continue
		}
		hdr := readAt(f, s.Value, 16) // a string header: data pointer, length
		if hdr == nil {
			return ""
		}
		n := binary.LittleEndian.Uint64(hdr[8:])
		if n == 0 || n > maxCmdline {
			return ""
		}
		return string(readAt(f, binary.LittleEndian.Uint64(hdr), n))
	}
	return ""
}

// maxCmdline bounds what stringVar reads for a command line.
const maxCmdline = 1 << 16

// readAt reads n bytes at virtual address addr from the section holding
// them, or returns nil.
func readAt(f *elf.File, addr, n uint64) []byte {
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_PROGBITS || addr < sec.Addr || addr+n > sec.Addr+sec.Size {
			continue
		}
		b := make([]byte, n)
		if _, err := sec.ReadAt(b, int64(addr-sec.Addr)); err != nil {
			return nil
		}
		return b
	}
	return nil
}

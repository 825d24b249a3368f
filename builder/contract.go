// Package builder turns an ordinary Go main package into a bootable unikgo
// PVH image: it links the kernel in through a go build overlay (the user's
// files stay untouched), sets the entry point, and rewrites the build ID note
// into the PVH entry note. It also builds test binaries the same way.
//
// It drives the stock go command found on PATH; nothing here needs cgo.
package builder

// The contract with the kernel and the toolchain. Each value lives here once.
const (
	// KernelPackage is linked into every image with a blank import.
	KernelPackage = "github.com/unikgo/unikgo/kernel"
	// NetworkPackage is linked in too when the program uses package net,
	// unless it imports a NIC driver (NICDrivers) to drive the devices
	// itself: it brings up the interfaces and answers socket calls.
	NetworkPackage = "github.com/unikgo/unikgo/devices/network"
	// ModulePath is the module that provides the kernel.
	ModulePath = "github.com/unikgo/unikgo"
	// EntrySymbol is the kernel's PVH entry point (package boot).
	EntrySymbol = "github.com/unikgo/unikgo/boot.pvhEntry"
	// CmdlineVar receives --cmdline through -X: the command line the kernel
	// uses when the boot loader passes none.
	CmdlineVar = KernelPackage + ".buildCmdline"

	// StubPackage is the kernel-less test image: its entry prints
	// StubConsoleLine and exits with StubStatus. Build it with
	// BuildOptions{Package: StubPackage, EntrySymbol: StubEntrySymbol,
	// NoKernel: true} from inside this module.
	StubPackage     = ModulePath + "/builder/testdata/pvhstub"
	StubEntrySymbol = "main.stubEntry"
	StubConsoleLine = "unikgo pvh stub"
	StubStatus      = 7

	// buildIDFlag makes the linker emit one 8-byte GNU build ID note (all
	// zeros, so builds stay reproducible) that pvhnote rewrites.
	buildIDFlag = "-B 0x0000000000000000"

	// The known-good Go toolchains: the kernel depends on runtime details
	// (startup stack, TLS, heap layout) of these releases.
	MinGoVersion = "go1.26" // inclusive
	MaxGoVersion = "go1.27" // exclusive, compared by language version
	targetGOOS   = "linux"
	targetGOARCH = "amd64"

	// overlayFile is the generated file added to the main package; the
	// test variant is added as an external test file.
	overlayFile     = "zz_unikgo_kernel.go"
	overlayTestFile = "zz_unikgo_kernel_test.go"

	// ImageSuffix names images whose output path is not given.
	ImageSuffix = ".unik"
)

// NICDrivers are the network drivers; a program importing one is left to
// bring its devices up itself (NetworkPackage is not linked in).
var NICDrivers = [...]string{ModulePath + "/netfront", ModulePath + "/virtio/net"}

// Package pci finds PCI functions and gives drivers their configuration
// space, their BARs and MSI-X, with every value a device provides treated
// as untrusted.
//
// Configuration space is reached through the Config interface: System uses
// configuration mechanism #1 (ports 0xCF8/0xCFC, the 256-byte space of PCI
// Local Bus 3.0, section 3.2.2.3.2), and package pcitest simulates it for
// host tests. Enumerate scans buses 0 to 255, devices 0 to 31, and
// functions 1 to 7 of multi-function devices (header type bit 7).
//
// BARs are decoded as the PCI 3.0 specification (section 6.2.5.1) says:
// 32- or 64-bit memory and I/O, sized by writing all ones with decoding
// turned off and reading back the mask; a size that is not a power of two,
// a 64-bit BAR in the last slot, or a range that wraps is an error.
// Capabilities (section 6.7) are walked with every pointer masked to a
// dword, kept out of the header and checked against a visited set, so a
// looping or truncated list is an error and never a hang. MSI-X (section
// 6.8.2) is programmed through its table in a memory BAR, whose offset and
// size are checked against the BAR before anything is mapped.
//
// In a unikgo image everything runs in ring 0 and memory below 4 GiB,
// MMIO included, is identity-mapped, so System maps a memory BAR by
// using its bus address as a pointer. A BAR above 4 GiB or not assigned by
// the firmware is refused.
package pci

// Command pvhstub is a minimal PVH guest used to test unikbuild without the
// kernel: its entry point (stubEntry, in stub_amd64.s) prints one line on COM1
// and on port 0xE9, reports status 7 through QEMU's isa-debug-exit device and
// halts. The Go main function never runs; it only makes this a main package.
package main

// stubEntry is the PVH entry point. It runs in 32-bit protected mode with
// paging off and no stack, so it is written in assembly that encodes the same
// in 32- and 64-bit mode.
func stubEntry()

func main() {}

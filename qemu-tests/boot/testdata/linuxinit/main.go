// Command linuxinit is the Linux baseline of the boot benchmark: built as
// an ordinary static Linux binary, it runs as /init of an initramfs on
// Debian's kernel, does what examples/hello does, reports the guest time
// since the kernel started (/proc/uptime) and powers the machine off.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	os.Mkdir("/proc", 0o555)
	if err := syscall.Mount("proc", "/proc", "proc", 0, ""); err == nil {
		if b, err := os.ReadFile("/proc/uptime"); err == nil {
			fmt.Println("linux: main after", strings.Fields(string(b))[0], "s")
		}
	}
	fmt.Println("Hello from unikgo!")
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

// Command syscalls checks the kernel's answers to system calls an ordinary
// Go program may make: an unimplemented call fails with ENOSYS (and the
// kernel reports it once on the console), the process identity and time
// calls answer sensibly.
package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
)

func main() {
	for i := 0; i < 3; i++ {
		_, _, errno := syscall.Syscall(syscall.SYS_ACCT, 0, 0, 0)
		if errno != syscall.ENOSYS {
			fmt.Println("syscalls: FAIL: acct returned", errno)
			os.Exit(1)
		}
	}
	if os.Getpid() <= 0 {
		fmt.Println("syscalls: FAIL: getpid", os.Getpid())
		os.Exit(1)
	}
	if _, err := os.Open("/etc/passwd"); !os.IsNotExist(err) {
		fmt.Println("syscalls: FAIL: open /etc/passwd:", err)
		os.Exit(1)
	}
	if y := time.Now().Year(); y < 2024 {
		fmt.Println("syscalls: FAIL: wall clock year", y)
		os.Exit(1)
	}
	fmt.Println("syscalls: env GOMEMLIMIT =", os.Getenv("GOMEMLIMIT"))
	fmt.Printf("syscalls: %d CPUs, GOMAXPROCS %d\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Println("syscalls: ok")
}

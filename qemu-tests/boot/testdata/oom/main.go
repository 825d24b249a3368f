// Command oom keeps allocating live memory past the VM's RAM: Go must end
// with its own "out of memory" fatal error, not a hang or a triple fault.
package main

import "fmt"

func main() {
	fmt.Println("oom: allocating")
	var keep [][]byte
	for i := 0; ; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		keep = append(keep, b)
		if i%16 == 0 {
			fmt.Println("oom: live MiB", len(keep))
		}
	}
}

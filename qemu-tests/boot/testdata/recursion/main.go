// Command recursion recurses without bound: Go must stop it with its
// "goroutine stack exceeds" fatal error.
package main

import "fmt"

//go:noinline
func deep(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	return deep(n+1) + int(pad[0])
}

func main() {
	fmt.Println("recursion: starting")
	fmt.Println(deep(0))
}

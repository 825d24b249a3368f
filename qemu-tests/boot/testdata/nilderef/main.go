// Command nilderef dereferences a nil pointer: Go must report its usual
// panic, as on Linux, and exit with status 2.
package main

import "fmt"

type T struct{ x int }

//go:noinline
func get(t *T) int { return t.x }

func main() {
	fmt.Println("nilderef: about to dereference nil")
	fmt.Println(get(nil))
}

// Command hello is the smallest unikgo program: an ordinary Go main package
// that prints a greeting and its arguments. Build and boot it with
//
//	unikbuild run ./examples/hello -- some args
//
// A first argument that is a number becomes the exit status, so the exit
// path can be checked too.
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	fmt.Println("Hello from unikgo!")
	if len(os.Args) > 1 {
		fmt.Println("args:", os.Args[1:])
		if n, err := strconv.Atoi(os.Args[1]); err == nil {
			os.Exit(n)
		}
	}
}

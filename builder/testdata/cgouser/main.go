// Command cgouser needs cgo; unikbuild must refuse it.
package main

// int answer(void) { return 42; }
import "C"

func main() { println(C.answer()) }

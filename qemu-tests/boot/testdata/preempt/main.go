// Command preempt checks asynchronous preemption: a goroutine spinning in a
// loop without function calls has no synchronous preemption point, so
// runtime.GC (which must stop the world) and a sleeping main goroutine
// (GOMAXPROCS set to 1) only make progress if the kernel delivers SIGURG and
// the runtime's signal handler preempts the loop.
//
// An optional argument, a duration, keeps the program running that much
// longer with the loop spinning, so that a profile (TestProfile) is mostly
// the loop however long the start took.
package main

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

var sink int

// spin loops forever without a call. It is a function of its own so that
// the kernel's profiler (TestProfile) has a caller to find by walking the
// stack.
//
//go:noinline
func spin() {
	x := 0
	for {
		x++
		if x == -1 {
			sink = x
		}
	}
}

func main() {
	var hold time.Duration
	if len(os.Args) > 1 {
		d, err := time.ParseDuration(os.Args[1])
		if err != nil {
			fmt.Println("preempt: FAIL: argument:", err)
			os.Exit(2)
		}
		hold = d
	}
	runtime.GOMAXPROCS(1)
	started := make(chan bool)
	go func() {
		started <- true
		spin()
	}()
	<-started
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		runtime.GC()
		time.Sleep(time.Millisecond)
		fmt.Println("preempt: GC and 1ms sleep beside a spinning goroutine took", time.Since(t0).Round(time.Millisecond))
	}
	time.Sleep(hold)
	fmt.Println("preempt: ok")
}

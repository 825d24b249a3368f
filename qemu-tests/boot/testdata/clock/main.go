// Command clock prints the guest's clocks every half second for ten
// seconds: the monotonic time since its start and the wall time, both in
// nanoseconds. TestClock holds them against the host's clocks.
package main

import (
	"fmt"
	"time"
)

func main() {
	start := time.Now()
	for i := 0; i <= 20; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * 500 * time.Millisecond)))
		now := time.Now()
		fmt.Printf("clock: %d %d\n", now.Sub(start).Nanoseconds(), now.UnixNano())
	}
}

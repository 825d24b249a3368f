// Command irq checks device interrupt delivery to Go code
// (/dev/unikgo/irq through kernel/irq): it allocates lines, raises each
// with a self-IPI through the local APIC (what a device's MSI write does),
// and waits for the wake-up in a goroutine parked in the netpoller.
package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/irq"
)

func fail(format string, args ...any) {
	fmt.Printf("irq: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// selfIPI sends vector to this CPU: ICR low (0x300) with the "self"
// destination shorthand, fixed delivery (Intel SDM vol. 3 §11.6.1).
func selfIPI(vector uint8) {
	icr := (*uint32)(unsafe.Add(nil, uintptr(0xfee00300)))
	atomic.StoreUint32(icr, 1<<18|1<<14|uint32(vector))
}

func main() {
	a, err := irq.Alloc()
	if err != nil {
		fail("%v", err)
	}
	b, err := irq.Alloc()
	if err != nil {
		fail("%v", err)
	}
	if a.Vector == b.Vector {
		fail("two lines share vector %#x", a.Vector)
	}
	if a.MSI.Addr&0xfff00000 != 0xfee00000 || a.MSI.Data != uint32(a.Vector) {
		fail("MSI message %#x/%#x for vector %#x", a.MSI.Addr, a.MSI.Data, a.Vector)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 100; i++ {
		selfIPI(a.Vector)
		if err := a.Wait(ctx); err != nil {
			fail("line %#x, interrupt %d: %v", a.Vector, i, err)
		}
	}
	// Nothing was sent to b: its Wait must time out.
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := b.Wait(short); err == nil {
		fail("line %#x woke without an interrupt", b.Vector)
	}
	selfIPI(b.Vector)
	if err := b.Wait(ctx); err != nil {
		fail("line %#x: %v", b.Vector, err)
	}
	if err := a.Close(); err != nil {
		fail("close: %v", err)
	}
	if err := a.Wait(ctx); err == nil {
		fail("Wait on a closed line succeeded")
	}
	c, err := irq.Alloc()
	if err != nil {
		fail("alloc after close: %v", err)
	}
	if c.Vector != a.Vector {
		fail("closed vector %#x not reused (got %#x)", a.Vector, c.Vector)
	}
	fmt.Println("irq: ok")
}

package xenstore_test

import (
	"context"
	"fmt"

	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

// A guest connects over its ring page; here the page and the event
// channel are simulated by xenstoretest, in a real guest the kernel
// provides them (HVM_PARAM_STORE_PFN, HVM_PARAM_STORE_EVTCHN).
func Example() {
	srv := xenstoretest.NewServer()
	ring := srv.NewRing(5)
	defer ring.Close()
	c := xenstore.NewClient(xenstore.NewRingConn(ring.Page, ring.GuestNotify, ring.GuestWait))
	defer c.Close()
	ctx := context.Background()

	// Relative paths live under /local/domain/5.
	if err := c.Write(ctx, "data/greeting", "hello"); err != nil {
		panic(err)
	}
	w, err := c.Watch(ctx, "data", "")
	if err != nil {
		panic(err)
	}
	fmt.Println("registered:", (<-w.Events()).Path)

	err = c.Transaction(ctx, func(tx *xenstore.Tx) error {
		v, err := tx.Read(ctx, "data/greeting")
		if err != nil {
			return err
		}
		return tx.Write(ctx, "data/greeting", v+", world")
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("changed:", (<-w.Events()).Path)
	v, _ := c.Read(ctx, "/local/domain/5/data/greeting")
	fmt.Println(v)
	// Output:
	// registered: data
	// changed: data/greeting
	// hello, world
}

// Command qubesdb is a VM-side QubesDB client on real Xen: it dials dom0's
// QubesDB (vchan port 111; in the lab, qubesdbd behind dom0's libxenvchan),
// prints what the initial sync brought, writes a key of its own, and
// reports the firewall changes dom0 pushes until dom0 removes them.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/unikgo/unikgo/services/qubesdb"
	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/vchan/guest"
)

func fail(format string, args ...any) {
	fmt.Printf("qubesdb: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p, err := guest.Platform(ctx)
	if err != nil {
		fail("%v", err)
	}
	conn, err := vchan.Dial(ctx, p, 0, 111)
	if err != nil {
		fail("%v", err)
	}
	start := time.Now()
	db, err := qubesdb.Connect(ctx, conn, qubesdb.Options{})
	if err != nil {
		fail("connect: %v (vchan: %s)", err, conn.Diag())
	}
	fmt.Printf("qubesdb: synced %d entries in %v\n", len(db.Multiread("/")), time.Since(start).Round(time.Millisecond))
	for _, k := range []string{"/name", "/qubes-ip", "/qubes-gateway"} {
		v, ok := db.Read(k)
		fmt.Printf("qubesdb: %s = %q (%v)\n", k, v, ok)
	}
	w, err := db.Watch("/qubes-firewall/")
	if err != nil {
		fail("watch: %v", err)
	}
	if err := db.Write(ctx, "/qubes-service/unikgo", "1"); err != nil {
		fail("write: %v", err)
	}
	fmt.Println("qubesdb: watching /qubes-firewall/")
	for {
		select {
		case e, ok := <-w.C:
			if !ok {
				fail("watch ended: %v", db.Err())
			}
			if e.Removed {
				fmt.Printf("qubesdb: removed %s\n", e.Path)
				db.Close()
				fmt.Println("qubesdb: done")
				return
			}
			fmt.Printf("qubesdb: pushed %s = %q\n", e.Path, e.Value)
		case <-ctx.Done():
			fail("no removal from dom0: %v", ctx.Err())
		}
	}
}

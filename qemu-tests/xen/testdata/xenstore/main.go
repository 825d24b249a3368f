// Command xenstore exercises a guest's xenstore connection on real Xen:
// it reports its domid and name, writes data/greeting for dom0 to read,
// waits on a watch until dom0 writes data/command, increments data/counter
// in a transaction (conflicting with itself on the first attempt, so that
// xenstored answers EAGAIN and the transaction is retried), then serves
// until SIGTERM, which `xl shutdown` sends through the kernel.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/unikgo/unikgo/xenpv/domain"
	"github.com/unikgo/unikgo/xenpv/xenstore"
)

func fail(format string, args ...any) {
	fmt.Printf("xenstore: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	c, err := domain.Xenstore()
	if err != nil {
		fail("%v", err)
	}
	id, err := domain.ID(ctx)
	if err != nil {
		fail("%v", err)
	}
	name, err := c.Read(ctx, "name")
	if err != nil {
		fail("reading name: %v", err)
	}
	fmt.Printf("xenstore: domid %d name %s\n", id, name)

	if err := c.Write(ctx, "data/greeting", "hello from unikgo"); err != nil {
		fail("writing data/greeting: %v", err)
	}
	// The wall clock comes from Xen's shared_info and advances with Xen
	// system time; dom0 compares it with its own.
	if err := c.Write(ctx, "data/time", strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
		fail("writing data/time: %v", err)
	}
	w, err := c.Watch(ctx, "data/command", "cmd")
	if err != nil {
		fail("watching data/command: %v", err)
	}
	fmt.Println("xenstore: waiting for data/command")
	for cmd := ""; cmd != "go"; {
		select {
		case <-w.Events():
		case <-ctx.Done():
			fail("no data/command from dom0")
		}
		cmd, _ = c.Read(ctx, "data/command")
	}
	fmt.Println("xenstore: dom0 said go")

	attempts := 0
	err = c.Transaction(ctx, func(tx *xenstore.Tx) error {
		attempts++
		v, err := tx.Read(ctx, "data/counter")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		n, _ := strconv.Atoi(v)
		if attempts == 1 {
			// A write outside the transaction to a key it read makes
			// xenstored refuse the commit with EAGAIN.
			if err := c.Write(ctx, "data/counter", "100"); err != nil {
				return err
			}
		}
		return tx.Write(ctx, "data/counter", strconv.Itoa(n+1))
	})
	if err != nil {
		fail("transaction: %v", err)
	}
	v, _ := c.Read(ctx, "data/counter")
	fmt.Printf("xenstore: counter = %s after %d attempts\n", v, attempts)

	fmt.Println("xenstore: serving until SIGTERM")
	select {
	case <-term:
		fmt.Println("xenstore: got SIGTERM, exiting cleanly")
	case <-ctx.Done():
		fail("no SIGTERM")
	}
}

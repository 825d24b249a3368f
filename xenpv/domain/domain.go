// Package domain gives a unikgo guest on Xen its own resources: its id,
// its xenstore connection (the ring page and event channel the toolstack
// set up, HVM_PARAM_STORE_PFN / _EVTCHN), and the control/shutdown
// protocol through which `xl shutdown` and `xl reboot` reach it.
package domain

import (
	"context"
	"fmt"
	"sync"
	"unsafe"

	"github.com/unikgo/unikgo/xenpv"
	"github.com/unikgo/unikgo/xenpv/evtchn"
	"github.com/unikgo/unikgo/xenpv/xenstore"
)

var (
	once   sync.Once
	client *xenstore.Client
	mux    *evtchn.Mux
	err    error
)

// OnXen reports whether this program runs as a Xen guest with hypercalls
// set up by the kernel.
func OnXen() bool { return xenpv.Ready() }

// Xenstore returns the domain's xenstore client, connecting on first use.
func Xenstore() (*xenstore.Client, error) {
	once.Do(func() { client, err = connect() })
	return client, err
}

// Events returns the event-channel multiplexer the xenstore connection
// uses, for drivers that need ports of their own.
func Events() (*evtchn.Mux, error) {
	if _, err := Xenstore(); err != nil {
		return nil, err
	}
	return mux, nil
}

func connect() (*xenstore.Client, error) {
	if !OnXen() {
		return nil, fmt.Errorf("domain: not running on Xen")
	}
	pfn, err := xenpv.GetParam(xenpv.ParamStorePFN)
	if err != nil {
		return nil, fmt.Errorf("domain: xenstore page (HVM_PARAM_STORE_PFN): %w", err)
	}
	port, err := xenpv.GetParam(xenpv.ParamStoreEvtchn)
	if err != nil {
		return nil, fmt.Errorf("domain: xenstore event channel (HVM_PARAM_STORE_EVTCHN): %w", err)
	}
	if pfn == 0 || pfn >= 1<<20 {
		return nil, fmt.Errorf("domain: xenstore page frame %#x outside the identity-mapped 4 GiB", pfn)
	}
	dev, err := evtchn.Open()
	if err != nil {
		return nil, err
	}
	if err := dev.Adopt(evtchn.Port(port)); err != nil {
		dev.Close()
		return nil, err
	}
	mux = evtchn.NewMux(dev)
	ch := mux.Channel(evtchn.Port(port))
	// The page is guest-physical memory, identity-mapped by the kernel.
	page := unsafe.Slice((*byte)(unsafe.Add(nil, uintptr(pfn<<12))), 4096)
	conn := xenstore.NewRingConn(page, ch.Notify, ch.Wait)
	return xenstore.NewClient(conn), nil
}

// ID returns this domain's id, from xenstore's "domid" key.
func ID(ctx context.Context) (xenstore.DomID, error) {
	c, err := Xenstore()
	if err != nil {
		return 0, err
	}
	s, err := c.Read(ctx, "domid")
	if err != nil {
		return 0, fmt.Errorf("domain: reading domid: %w", err)
	}
	return xenstore.ParseDomID(s)
}

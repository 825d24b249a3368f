// Package xenglue connects Xen PV drivers (blkfront, netfront) to this
// domain's services: its xenstore connection, grant table, DMA memory and
// event channels. Drivers take these through small interfaces of their
// own so they can be tested against simulated backends; this is the one
// place the real ones are put together.
package xenglue

import (
	"context"
	"fmt"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv/domain"
	"github.com/unikgo/unikgo/xenpv/evtchn"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/xenstore"
)

// Domain is what a frontend driver needs of the domain it runs in.
type Domain struct {
	Store  *xenstore.Client
	Grants *gnttab.Table
	Memory dma.Allocator
	Mux    *evtchn.Mux
}

// Open gathers the running domain's services.
func Open() (*Domain, error) {
	if !domain.OnXen() {
		return nil, fmt.Errorf("xenglue: not running on Xen")
	}
	store, err := domain.Xenstore()
	if err != nil {
		return nil, err
	}
	mux, err := domain.Events()
	if err != nil {
		return nil, err
	}
	grants, err := gnttab.Open()
	if err != nil {
		return nil, err
	}
	mem, err := dma.System()
	if err != nil {
		return nil, err
	}
	return &Domain{Store: store, Grants: grants, Memory: mem, Mux: mux}, nil
}

// Port is one event channel bound through the domain's Mux.
type Port struct {
	mux *evtchn.Mux
	ch  *evtchn.Channel
}

// AllocUnbound returns a new port that domain remote may bind.
func (d *Domain) AllocUnbound(remote gnttab.DomID) (*Port, error) {
	p, err := d.Mux.Device().AllocUnbound(uint16(remote))
	if err != nil {
		return nil, fmt.Errorf("event channel for domain %d: %w", remote, err)
	}
	return &Port{mux: d.Mux, ch: d.Mux.Channel(p)}, nil
}

// Port is the local port number.
func (p *Port) Port() uint32 { return uint32(p.ch.Port) }

// Wait returns once the port fired since the previous Wait, or ctx ends.
func (p *Port) Wait(ctx context.Context) error { return p.ch.Wait(ctx) }

// Notify signals the remote end.
func (p *Port) Notify() error { return p.ch.Notify() }

// Close unbinds the port.
func (p *Port) Close() error {
	err := p.mux.Device().Unbind(p.ch.Port)
	p.mux.Forget(p.ch.Port)
	return err
}

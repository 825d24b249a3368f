// Package guest is vchan's Xen transport for a unikgo guest: grant pages
// from this domain's grant table (xenpv/gnttab) in DMA memory, event
// channels from /dev/xen/evtchn, and the domain's xenstore connection.
//
//	p, err := guest.Platform(ctx)
//	conn, err := vchan.Dial(ctx, p, 0, 111) // QubesDB in dom0
package guest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/xenpv/domain"
	"github.com/unikgo/unikgo/xenpv/evtchn"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/xenstore/vchanstore"
)

// Platform returns the vchan platform of the domain this program runs in.
func Platform(ctx context.Context) (vchan.Platform, error) {
	xs, err := domain.Xenstore()
	if err != nil {
		return vchan.Platform{}, err
	}
	self, err := domain.ID(ctx)
	if err != nil {
		return vchan.Platform{}, err
	}
	mux, err := domain.Events()
	if err != nil {
		return vchan.Platform{}, err
	}
	tbl, err := gnttab.Open()
	if err != nil {
		return vchan.Platform{}, err
	}
	mem, err := dma.System()
	if err != nil {
		return vchan.Platform{}, err
	}
	return vchan.Platform{
		Self:   vchan.DomID(self),
		Memory: memory{tbl, mem},
		Events: events{mux},
		Store:  vchanstore.New(xs, vchan.DomID(self)),
	}, nil
}

type memory struct {
	tbl *gnttab.Table
	mem dma.Allocator
}

// Grant allocates n pages in one DMA region and grants each to peer.
func (m memory) Grant(peer vchan.DomID, n int) (vchan.PageSet, error) {
	if n <= 0 {
		return nil, fmt.Errorf("vchan: grant %d pages: want at least one", n)
	}
	r, err := m.mem.Alloc(n * dma.PageSize)
	if err != nil {
		return nil, fmt.Errorf("vchan: pages to grant to domain %d: %w", peer, err)
	}
	g := &granted{m: m, region: r}
	for i := range n {
		ref, err := m.tbl.Grant(gnttab.DomID(peer), r.Frame()+uint64(i), false)
		if err != nil {
			g.Release()
			return nil, fmt.Errorf("vchan: grant page %d of %d to domain %d: %w", i+1, n, peer, err)
		}
		g.refs = append(g.refs, vchan.GrantRef(ref))
		g.pages = append(g.pages, r.Bytes[i*dma.PageSize:(i+1)*dma.PageSize])
	}
	return g, nil
}

type granted struct {
	m      memory
	region *dma.Region
	refs   []vchan.GrantRef
	pages  [][]byte
	once   sync.Once
}

func (g *granted) Pages() [][]byte        { return g.pages }
func (g *granted) Refs() []vchan.GrantRef { return g.refs }

// Release revokes the grants; the memory goes back only once the peer
// has unmapped every page, which may be later.
func (g *granted) Release() error {
	var err error
	g.once.Do(func() {
		left := atomic.Int32{}
		left.Store(int32(len(g.refs)) + 1)
		done := func() {
			if left.Add(-1) == 0 {
				g.m.mem.Free(g.region)
			}
		}
		for _, ref := range g.refs {
			if e := g.m.tbl.RevokeLater(gnttab.Ref(ref), done); e != nil && err == nil {
				err = e
			}
		}
		done()
		g.pages = nil
	})
	return err
}

// Map maps the peer's pages.
func (m memory) Map(peer vchan.DomID, refs []vchan.GrantRef, writable bool) (vchan.PageSet, error) {
	rs := make([]gnttab.Ref, len(refs))
	for i, r := range refs {
		rs[i] = gnttab.Ref(r)
	}
	mp, err := m.tbl.Map(gnttab.DomID(peer), rs, !writable)
	if err != nil {
		return nil, fmt.Errorf("vchan: %w", err)
	}
	return &mapped{mp: mp, refs: refs}, nil
}

type mapped struct {
	mp   *gnttab.Mapping
	refs []vchan.GrantRef
	once sync.Once
}

func (p *mapped) Pages() [][]byte        { return p.mp.Pages() }
func (p *mapped) Refs() []vchan.GrantRef { return p.refs }
func (p *mapped) Release() error {
	var err error
	p.once.Do(func() { err = p.mp.Unmap() })
	return err
}

type events struct{ mux *evtchn.Mux }

func (e events) AllocUnbound(remote vchan.DomID) (vchan.EventChannel, error) {
	p, err := e.mux.Device().AllocUnbound(uint16(remote))
	if err != nil {
		return nil, err
	}
	return &channel{mux: e.mux, ch: e.mux.Channel(p)}, nil
}

func (e events) BindInterdomain(remote vchan.DomID, port uint32) (vchan.EventChannel, error) {
	p, err := e.mux.Device().BindInterdomain(uint16(remote), evtchn.Port(port))
	if err != nil {
		return nil, err
	}
	return &channel{mux: e.mux, ch: e.mux.Channel(p)}, nil
}

type channel struct {
	mux *evtchn.Mux
	ch  *evtchn.Channel
}

func (c *channel) Port() uint32            { return uint32(c.ch.Port) }
func (c *channel) Notify() error           { return c.ch.Notify() }
func (c *channel) Events() <-chan struct{} { return c.ch.C() }
func (c *channel) Close() error {
	err := c.mux.Device().Unbind(c.ch.Port)
	c.mux.Forget(c.ch.Port)
	return err
}

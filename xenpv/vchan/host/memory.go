package host

import (
	"fmt"

	"github.com/unikgo/unikgo/xenpv/vchan"
)

// grantKey names a grant the way Xen does: by granting domain and ref.
type grantKey struct {
	owner vchan.DomID
	ref   vchan.GrantRef
}

// grant is one granted page.
type grant struct {
	grantee vchan.DomID
	page    []byte
	maps    int  // live mappings by the grantee
	ended   bool // the owner ended the grant; the entry goes when maps reaches 0
}

// memory implements vchan.Memory for one domain.
type memory struct{ d *domain }

// Grant allocates n zeroed pages and grants them to peer.
func (m memory) Grant(peer vchan.DomID, n int) (vchan.PageSet, error) {
	if n <= 0 {
		return nil, fmt.Errorf("host: domain %d: grant %d pages: want at least one", m.d.id, n)
	}
	if peer == m.d.id {
		return nil, fmt.Errorf("host: domain %d: grant to itself", m.d.id)
	}
	h := m.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ps := &grantedPages{d: m.d}
	for range n {
		ref := max(h.nextRef[m.d.id], firstGrantRef)
		h.nextRef[m.d.id] = ref + 1
		page := make([]byte, vchan.PageSize)
		h.grants[grantKey{m.d.id, ref}] = &grant{grantee: peer, page: page}
		ps.refs = append(ps.refs, ref)
		ps.pages = append(ps.pages, page)
	}
	return ps, nil
}

// grantedPages are pages this domain granted.
type grantedPages struct {
	d        *domain
	refs     []vchan.GrantRef
	pages    [][]byte
	released bool
}

func (p *grantedPages) Pages() [][]byte        { return p.pages }
func (p *grantedPages) Refs() []vchan.GrantRef { return p.refs }

// Release ends the grants. A page the grantee still maps is kept out of
// circulation until it unmaps, as a Xen guest must do.
func (p *grantedPages) Release() error {
	h := p.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.released {
		return fmt.Errorf("host: domain %d: grants %v released twice", p.d.id, p.refs)
	}
	p.released = true
	for _, ref := range p.refs {
		k := grantKey{p.d.id, ref}
		g := h.grants[k]
		g.ended = true
		if g.maps == 0 {
			delete(h.grants, k)
		}
	}
	return nil
}

// Map maps pages peer granted to this domain.
func (m memory) Map(peer vchan.DomID, refs []vchan.GrantRef, writable bool) (vchan.PageSet, error) {
	h := m.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ps := &mappedPages{d: m.d, owner: peer, refs: append([]vchan.GrantRef(nil), refs...)}
	for _, ref := range refs {
		g, ok := h.grants[grantKey{peer, ref}]
		if !ok || g.ended {
			return nil, fmt.Errorf("host: domain %d: map grant %d of domain %d: no such grant", m.d.id, ref, peer)
		}
		if g.grantee != m.d.id {
			return nil, fmt.Errorf("host: domain %d: map grant %d of domain %d: granted to domain %d", m.d.id, ref, peer, g.grantee)
		}
		ps.pages = append(ps.pages, g.page)
	}
	for _, ref := range refs {
		h.grants[grantKey{peer, ref}].maps++
	}
	return ps, nil
}

// mappedPages are a peer's pages mapped here.
type mappedPages struct {
	d        *domain
	owner    vchan.DomID
	refs     []vchan.GrantRef
	pages    [][]byte
	released bool
}

func (p *mappedPages) Pages() [][]byte        { return p.pages }
func (p *mappedPages) Refs() []vchan.GrantRef { return p.refs }

// Release unmaps the pages; a grant its owner already ended goes away with
// its last mapping.
func (p *mappedPages) Release() error {
	h := p.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.released {
		return fmt.Errorf("host: domain %d: mapping of grants %v of domain %d released twice", p.d.id, p.refs, p.owner)
	}
	p.released = true
	for _, ref := range p.refs {
		k := grantKey{p.owner, ref}
		g := h.grants[k]
		g.maps--
		if g.maps == 0 && g.ended {
			delete(h.grants, k)
		}
	}
	return nil
}

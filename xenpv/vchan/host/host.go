// Package host implements vchan's platform interfaces inside one process:
// grant tables over shared byte slices, event channels over Go channels and
// a xenstore over a map. Endpoints in different goroutines then exchange
// data exactly as they would across domains, which lets the protocol be
// tested, fuzzed and benchmarked without Xen.
//
// It keeps Xen's rules where they matter to vchan: refs 0-7 are never
// handed out, a page can only be mapped by the domain it was granted to, a
// port can only be bound by the domain it was allocated for, notifications
// to an unbound port are dropped, a domain may write only below its own
// xenstore home, and entries are readable only by their owner and reader.
package host

import (
	"fmt"
	"sort"
	"sync"

	"github.com/unikgo/unikgo/xenpv/vchan"
)

// firstGrantRef is the first ref Xen guests hand out; 0-7 are reserved.
const firstGrantRef = 8

// Hypervisor is the shared state of all emulated domains.
type Hypervisor struct {
	mu       sync.Mutex
	grants   map[grantKey]*grant
	nextRef  map[vchan.DomID]vchan.GrantRef
	ports    map[portKey]*port
	nextPort map[vchan.DomID]uint32
	store    map[string]node
	changed  chan struct{} // closed and replaced on every store change
}

// New returns a hypervisor with no grants, ports or xenstore entries.
func New() *Hypervisor {
	return &Hypervisor{
		grants:   map[grantKey]*grant{},
		nextRef:  map[vchan.DomID]vchan.GrantRef{},
		ports:    map[portKey]*port{},
		nextPort: map[vchan.DomID]uint32{},
		store:    map[string]node{},
		changed:  make(chan struct{}),
	}
}

// Platform returns the view of domain dom: what vchan running in it sees.
func (h *Hypervisor) Platform(dom vchan.DomID) vchan.Platform {
	d := &domain{h: h, id: dom}
	return vchan.Platform{Self: dom, Memory: memory{d}, Events: events{d}, Store: store{d}}
}

// domain binds the hypervisor to one calling domain.
type domain struct {
	h  *Hypervisor
	id vchan.DomID
}

// Usage counts what a domain holds; tests use it to prove that closing a
// vchan gives everything back.
type Usage struct {
	Grants   int      // pages granted and not yet ended (including ones kept back while mapped)
	Mappings int      // peer pages mapped
	Ports    int      // event channel ports
	Keys     []string // xenstore paths owned, sorted
}

// Usage reports what dom currently holds.
func (h *Hypervisor) Usage(dom vchan.DomID) Usage {
	h.mu.Lock()
	defer h.mu.Unlock()
	var u Usage
	for k, g := range h.grants {
		if k.owner == dom {
			u.Grants++
		}
		if g.grantee == dom {
			u.Mappings += g.maps
		}
	}
	for k := range h.ports {
		if k.dom == dom {
			u.Ports++
		}
	}
	for path, n := range h.store {
		if n.owner == dom {
			u.Keys = append(u.Keys, path)
		}
	}
	sort.Strings(u.Keys)
	return u
}

// Destroy emulates the death of dom: its ports are closed, and the peers
// of its interdomain channels see their Events channel closed (what the Xen
// implementation does once it notices the peer is gone). Its xenstore home
// is removed, as the toolstack does. Pages it mapped stay mapped for the
// peer, as Xen keeps granted frames alive until unmapped.
func (h *Hypervisor) Destroy(dom vchan.DomID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, p := range h.ports {
		if k.dom != dom {
			continue
		}
		if p.peer != nil {
			p.peer.peer = nil
			p.peer.closeEvents()
		}
		p.closeEvents()
		delete(h.ports, k)
	}
	home := homeOf(dom)
	for path := range h.store {
		if below(path, home) {
			delete(h.store, path)
		}
	}
	h.storeChangedLocked()
}

// homeOf is a domain's xenstore home.
func homeOf(dom vchan.DomID) string {
	return fmt.Sprintf("/local/domain/%d", dom)
}

package host

import (
	"context"
	"fmt"
	"strings"

	"github.com/unikgo/unikgo/xenpv/vchan"
)

// node is one xenstore entry. Directories are implicit: a path exists as a
// directory while some entry lies below it, so removing the last entry
// below a directory removes the directory too.
type node struct {
	value  string
	owner  vchan.DomID
	reader vchan.DomID
}

// store implements vchan.Store for one domain.
type store struct{ d *domain }

// storeChangedLocked wakes every WaitRead. Caller holds h.mu.
func (h *Hypervisor) storeChangedLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (s store) DomainPath(dom vchan.DomID) (string, error) { return homeOf(dom), nil }

// below reports whether path is dir or lies under it.
func below(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// checkOwn refuses writes outside the domain's home, as xenstored's
// permissions do for an unprivileged domain.
func (s store) checkOwn(path string) error {
	home := homeOf(s.d.id)
	if !strings.HasPrefix(path, home+"/") || strings.Contains(path, "//") || strings.HasSuffix(path, "/") {
		return fmt.Errorf("host: domain %d: write %q: permission denied outside %s", s.d.id, path, home)
	}
	return nil
}

// Publish writes all entries at once.
func (s store) Publish(entries []vchan.Entry, reader vchan.DomID) error {
	for _, e := range entries {
		if err := s.checkOwn(e.Path); err != nil {
			return err
		}
	}
	h := s.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range entries {
		h.store[e.Path] = node{value: e.Value, owner: s.d.id, reader: reader}
	}
	h.storeChangedLocked()
	return nil
}

// WaitRead waits until path exists and this domain may read it.
func (s store) WaitRead(ctx context.Context, path string) (string, error) {
	h := s.d.h
	for {
		h.mu.Lock()
		n, ok := h.store[path]
		changed := h.changed
		h.mu.Unlock()
		if ok && (n.owner == s.d.id || n.reader == s.d.id) {
			return n.value, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("host: domain %d: wait for %s: %w", s.d.id, path, ctx.Err())
		}
	}
}

// Unpublish removes dir and everything below it.
func (s store) Unpublish(dir string) error {
	if err := s.checkOwn(dir); err != nil {
		return err
	}
	h := s.d.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for path := range h.store {
		if below(path, dir) {
			delete(h.store, path)
		}
	}
	h.storeChangedLocked()
	return nil
}

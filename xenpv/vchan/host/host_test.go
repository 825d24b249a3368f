package host

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/xenpv/vchan"
)

const (
	domA vchan.DomID = 1
	domB vchan.DomID = 2
	domC vchan.DomID = 3
)

func TestGrantAndMap(t *testing.T) {
	hv := New()
	a, b, c := hv.Platform(domA), hv.Platform(domB), hv.Platform(domC)
	g, err := a.Memory.Grant(domB, 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]vchan.GrantRef{8, 9, 10}, g.Refs()); diff != "" {
		t.Errorf("refs (-want +got), 0-7 are reserved:\n%s", diff)
	}
	for i, p := range g.Pages() {
		if len(p) != vchan.PageSize {
			t.Errorf("page %d is %d bytes", i, len(p))
		}
	}
	m, err := b.Memory.Map(domA, g.Refs()[1:], true)
	if err != nil {
		t.Fatal(err)
	}
	m.Pages()[0][100] = 42
	if g.Pages()[1][100] != 42 {
		t.Error("a write through the mapping is not visible in the granted page")
	}

	failures := []struct {
		name string
		fn   func() error
	}{
		{"map by a domain the page was not granted to", func() error { _, err := c.Memory.Map(domA, g.Refs()[:1], true); return err }},
		{"map of an unknown ref", func() error { _, err := b.Memory.Map(domA, []vchan.GrantRef{7}, true); return err }},
		{"map naming the wrong granter", func() error { _, err := b.Memory.Map(domC, g.Refs()[:1], true); return err }},
		{"grant of no pages", func() error { _, err := a.Memory.Grant(domB, 0); return err }},
		{"grant to itself", func() error { _, err := a.Memory.Grant(domA, 1); return err }},
	}
	for _, f := range failures {
		if f.fn() == nil {
			t.Errorf("%s succeeded", f.name)
		}
	}

	// Ending a grant that is still mapped keeps the page out of circulation
	// until the mapping goes.
	if err := g.Release(); err != nil {
		t.Fatal(err)
	}
	if got := hv.Usage(domA).Grants; got != 2 {
		t.Errorf("grants held after release with 2 pages mapped = %d, want 2", got)
	}
	if _, err := b.Memory.Map(domA, g.Refs()[:1], true); err == nil {
		t.Error("mapped a grant its owner ended")
	}
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Usage{}, hv.Usage(domA)); diff != "" {
		t.Errorf("domain A after unmap (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Usage{}, hv.Usage(domB)); diff != "" {
		t.Errorf("domain B after unmap (-want +got):\n%s", diff)
	}
	if g.Release() == nil || m.Release() == nil {
		t.Error("double release succeeded")
	}
}

func pending(ch <-chan struct{}) int { return len(ch) }

func TestEventChannels(t *testing.T) {
	hv := New()
	a, b, c := hv.Platform(domA), hv.Platform(domB), hv.Platform(domC)
	srv, err := a.Events.AllocUnbound(domB)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Port() == 0 {
		t.Error("port 0 handed out")
	}
	if _, err := c.Events.BindInterdomain(domA, srv.Port()); err == nil {
		t.Error("a third domain bound a port allocated for domain B")
	}
	if _, err := b.Events.BindInterdomain(domA, srv.Port()+1); err == nil {
		t.Error("bound a port that does not exist")
	}
	cli, err := b.Events.BindInterdomain(domA, srv.Port())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Events.BindInterdomain(domA, srv.Port()); err == nil {
		t.Error("bound an already bound port")
	}

	// Notifications coalesce like the pending bit.
	for range 3 {
		if err := cli.Notify(); err != nil {
			t.Fatal(err)
		}
	}
	if got := pending(srv.Events()); got != 1 {
		t.Errorf("pending after 3 notifies = %d, want 1", got)
	}
	<-srv.Events()
	if err := srv.Notify(); err != nil {
		t.Fatal(err)
	}
	if got := pending(cli.Events()); got != 1 {
		t.Errorf("client pending = %d, want 1", got)
	}
	if got := pending(srv.Events()); got != 0 {
		t.Errorf("notify reached its own sender: pending = %d", got)
	}

	// After one end closes, the other's notifications are dropped silently.
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Notify(); err != nil {
		t.Errorf("notify to a closed peer: %v, want it dropped silently", err)
	}
	if cli.Notify() == nil || cli.Close() == nil {
		t.Error("use of a closed port succeeded")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []vchan.DomID{domA, domB} {
		if got := hv.Usage(d).Ports; got != 0 {
			t.Errorf("domain %d holds %d ports after close", d, got)
		}
	}
}

func TestDestroyClosesPeerEvents(t *testing.T) {
	hv := New()
	srv, _ := hv.Platform(domA).Events.AllocUnbound(domB)
	cli, err := hv.Platform(domB).Events.BindInterdomain(domA, srv.Port())
	if err != nil {
		t.Fatal(err)
	}
	if err := hv.Platform(domB).Store.Publish([]vchan.Entry{{Path: "/local/domain/2/x", Value: "1"}}, domA); err != nil {
		t.Fatal(err)
	}
	hv.Destroy(domB)
	select {
	case _, ok := <-srv.Events():
		if ok {
			t.Error("got an event instead of a closed channel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("peer's Events channel not closed")
	}
	if err := srv.Notify(); err != nil {
		t.Errorf("notify towards a dead domain: %v, want it dropped", err)
	}
	if diff := cmp.Diff(Usage{}, hv.Usage(domB)); diff != "" {
		t.Errorf("dead domain still holds (-want +got):\n%s", diff)
	}
	if _, ok := <-cli.Events(); ok {
		t.Error("the dead domain's own Events channel is still open")
	}
}

func TestStore(t *testing.T) {
	hv := New()
	a, b, c := hv.Platform(domA), hv.Platform(domB), hv.Platform(domC)
	home, _ := a.Store.DomainPath(domA)
	if home != "/local/domain/1" {
		t.Errorf("DomainPath = %q", home)
	}
	for _, path := range []string{"/local/domain/2/x", "/local/domain/1", "/local/domain/1/", "/local/domain/10/x", "/local/domain/1//x", "x"} {
		if err := a.Store.Publish([]vchan.Entry{{Path: path, Value: "v"}}, domB); err == nil {
			t.Errorf("Publish(%q) from domain 1 succeeded", path)
		}
	}

	got := make(chan string, 1)
	go func() {
		v, err := b.Store.WaitRead(context.Background(), "/local/domain/1/d/k")
		if err != nil {
			v = err.Error()
		}
		got <- v
	}()
	time.Sleep(5 * time.Millisecond)
	if err := a.Store.Publish([]vchan.Entry{{Path: "/local/domain/1/d/k", Value: "v1"}, {Path: "/local/domain/1/d/k2", Value: "v2"}}, domB); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "v1" {
		t.Errorf("WaitRead = %q, want v1", v)
	}
	if v, err := a.Store.WaitRead(context.Background(), "/local/domain/1/d/k2"); v != "v2" || err != nil {
		t.Errorf("owner WaitRead = %q, %v", v, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if _, err := c.Store.WaitRead(ctx, "/local/domain/1/d/k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitRead by a domain without permission: %v, want it to wait until the deadline", err)
	}
	if err := b.Store.Unpublish("/local/domain/1/d"); err == nil {
		t.Error("domain 2 removed domain 1's entries")
	}
	if err := a.Store.Unpublish("/local/domain/1/d"); err != nil {
		t.Fatal(err)
	}
	if err := a.Store.Unpublish("/local/domain/1/d"); err != nil {
		t.Errorf("Unpublish of a missing dir: %v, want nil", err)
	}
	if keys := hv.Usage(domA).Keys; len(keys) != 0 {
		t.Errorf("keys after Unpublish: %v", keys)
	}
}

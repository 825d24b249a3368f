package xenstore_test

import (
	"context"
	"testing"

	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

// BenchmarkReadOverRing measures a READ round trip through the simulated
// ring page and the fake xenstored: the client's own overhead plus the
// fake's, an upper bound for what the client adds on real Xen.
func BenchmarkReadOverRing(b *testing.B) {
	srv := xenstoretest.NewServer()
	srv.Set("/bench/key", "value")
	c, closeFn := srv.Client(1)
	defer closeFn()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Read(ctx, "/bench/key"); err != nil {
			b.Fatal(err)
		}
	}
}

package vchanstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/vchanstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

func TestStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := xenstoretest.NewServer()
	sc, closeS := srv.Client(3)
	defer closeS()
	cc, closeC := srv.Client(4)
	defer closeC()
	server := vchanstore.New(sc, 3)
	client := vchanstore.New(cc, 4)

	if p, err := client.DomainPath(3); err != nil || p != "/local/domain/3" {
		t.Fatalf("DomainPath = %q, %v", p, err)
	}
	dir := "/local/domain/3/data/vchan/4/1"
	got := make(chan string, 1)
	go func() {
		v, err := client.WaitRead(ctx, dir+"/ring-ref")
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	time.Sleep(20 * time.Millisecond)
	err := server.Publish([]vchan.Entry{{Path: dir + "/ring-ref", Value: "8"}, {Path: dir + "/event-channel", Value: "5"}}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "8" {
		t.Errorf("WaitRead = %q", v)
	}
	perms, err := sc.GetPerms(ctx, dir+"/event-channel")
	if err != nil {
		t.Fatal(err)
	}
	want := []xenstore.Perm{{Dom: 3, Access: xenstore.AccessNone}, {Dom: 4, Access: xenstore.AccessRead}}
	if diff := cmp.Diff(want, perms); diff != "" {
		t.Errorf("perms (-want +got):\n%s", diff)
	}
	if err := server.Unpublish(dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Get(dir); ok {
		t.Error("dir still there")
	}
	if _, ok := srv.Get("/local/domain/3/data/vchan/4"); ok {
		t.Error("empty parent not removed")
	}
	if err := server.Unpublish(dir); err != nil {
		t.Errorf("second Unpublish: %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, err := client.WaitRead(short, dir+"/ring-ref"); err == nil {
		t.Error("WaitRead of a removed key succeeded")
	}
}

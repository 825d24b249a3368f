package xenbus_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

func TestStateNumbersAndNames(t *testing.T) {
	// Numbers from shared/docs/xen-abi.md and io/xenbus.h.
	tests := []struct {
		s    xenbus.State
		n    uint32
		name string
	}{
		{xenbus.StateUnknown, 0, "Unknown"},
		{xenbus.StateInitialising, 1, "Initialising"},
		{xenbus.StateInitWait, 2, "InitWait"},
		{xenbus.StateInitialised, 3, "Initialised"},
		{xenbus.StateConnected, 4, "Connected"},
		{xenbus.StateClosing, 5, "Closing"},
		{xenbus.StateClosed, 6, "Closed"},
		{xenbus.StateReconfiguring, 7, "Reconfiguring"},
		{xenbus.StateReconfigured, 8, "Reconfigured"},
		{xenbus.State(9), 9, "State(9)"},
	}
	for _, tc := range tests {
		if uint32(tc.s) != tc.n || tc.s.String() != tc.name {
			t.Errorf("state %d: %q, want %d %q", uint32(tc.s), tc.s.String(), tc.n, tc.name)
		}
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]xenbus.State{"0": 0, "1": 1, "4": 4, "6": 6, "8": 8} {
		if got, err := xenbus.ParseState(in); err != nil || got != want {
			t.Errorf("ParseState(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "9", "10", "04", "-1", "4 ", "x", "4\x00", "99999999999"} {
		if _, err := xenbus.ParseState(bad); err == nil {
			t.Errorf("ParseState(%q) accepted", bad)
		}
	}
}

// toolstack sets up vif 0 and vbd 51712 for domain 5 with backends in dom0.
func toolstack(srv *xenstoretest.Server) {
	fe := "/local/domain/5/device/vif/0"
	be := "/local/domain/0/backend/vif/5/0"
	srv.Set(fe+"/backend", be)
	srv.Set(fe+"/backend-id", "0")
	srv.Set(fe+"/state", "1")
	srv.Set(fe+"/mac", "00:16:3e:00:00:01")
	srv.Set(be+"/state", "1")
	srv.Set(be+"/frontend", fe)
	for _, id := range []string{"51712", "832", "10"} {
		srv.Set("/local/domain/5/device/vbd/"+id+"/backend", "/local/domain/0/backend/vbd/5/"+id)
		srv.Set("/local/domain/5/device/vbd/"+id+"/backend-id", "0")
	}
	srv.Set("/local/domain/0/backend/vbd/5/832/sectors", "2097152")
	srv.Set("/local/domain/0/backend/vbd/5/832/info", "x")
}

func setup(t *testing.T) (*xenstoretest.Server, *xenstore.Client, context.Context) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	srv := xenstoretest.NewServer()
	toolstack(srv)
	c, closeFn := srv.Client(5)
	t.Cleanup(closeFn)
	return srv, c, ctx
}

func TestDevices(t *testing.T) {
	_, c, ctx := setup(t)
	got, err := xenbus.Devices(ctx, c, "vbd")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"10", "832", "51712"}, got); diff != "" {
		t.Errorf("vbd ids (-want +got):\n%s", diff)
	}
	if got, err := xenbus.Devices(ctx, c, "vkbd"); err != nil || len(got) != 0 {
		t.Errorf("no vkbd: %q, %v", got, err)
	}
	if _, err := xenbus.Devices(ctx, c, "a/b"); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("class with slash: %v", err)
	}
}

func TestOpenFrontend(t *testing.T) {
	srv, c, ctx := setup(t)
	f, err := xenbus.OpenFrontend(ctx, c, "vif", "0")
	if err != nil {
		t.Fatal(err)
	}
	if f.Backend != "/local/domain/0/backend/vif/5/0" || f.BackendID != 0 || f.Dir != "device/vif/0" {
		t.Errorf("frontend %+v", f)
	}
	if mac, err := f.Read(ctx, "mac"); err != nil || mac != "00:16:3e:00:00:01" {
		t.Errorf("mac = %q, %v", mac, err)
	}
	if s, err := f.State(ctx); err != nil || s != xenbus.StateInitialising {
		t.Errorf("State = %v, %v", s, err)
	}
	vbd, err := xenbus.OpenFrontend(ctx, c, "vbd", "832")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := vbd.ReadBackendUint(ctx, "sectors"); err != nil || n != 2097152 {
		t.Errorf("sectors = %d, %v", n, err)
	}
	if _, err := vbd.ReadBackendUint(ctx, "info"); err == nil {
		t.Error("non-numeric info accepted")
	}

	bad := []struct {
		name, key, value string
	}{
		{"relative backend", "backend", "local/domain/0/backend/vif/5/1"},
		{"root backend", "backend", "/"},
		{"garbage backend", "backend", "/a b"},
		{"backend-id text", "backend-id", "dom0"},
		{"backend-id reserved", "backend-id", "32752"},
		{"backend-id too big", "backend-id", "65536"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			dir := "/local/domain/5/device/vif/1"
			srv.Set(dir+"/backend", "/local/domain/0/backend/vif/5/1")
			srv.Set(dir+"/backend-id", "0")
			srv.Set(dir+"/"+tc.key, tc.value)
			if _, err := xenbus.OpenFrontend(ctx, c, "vif", "1"); err == nil {
				t.Errorf("%s=%q accepted", tc.key, tc.value)
			}
		})
	}
	if _, err := xenbus.OpenFrontend(ctx, c, "vif", "7"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing device: %v", err)
	}
}

func TestHandshake(t *testing.T) {
	srv, c, ctx := setup(t)
	f, err := xenbus.OpenFrontend(ctx, c, "vif", "0")
	if err != nil {
		t.Fatal(err)
	}
	be := f.Backend
	// A backend that walks InitWait → (frontend Connected) → Connected.
	go func() {
		time.Sleep(10 * time.Millisecond)
		srv.Set(be+"/state", "2")
		for {
			if v, _ := srv.Get("/local/domain/5/device/vif/0/state"); v == "4" {
				break
			}
			time.Sleep(time.Millisecond)
		}
		srv.Set(be+"/state", "4")
	}()
	if s, err := f.WaitBackendState(ctx, xenbus.StateInitWait); err != nil || s != xenbus.StateInitWait {
		t.Fatalf("WaitBackendState(InitWait) = %v, %v", s, err)
	}
	// Watch the frontend dir to check the keys appear in one commit.
	w, err := c.Watch(ctx, "device/vif/0", "")
	if err != nil {
		t.Fatal(err)
	}
	<-w.Events()
	keys := map[string]string{"tx-ring-ref": "8", "rx-ring-ref": "9", "event-channel": "3", "request-rx-copy": "1"}
	if err := f.PublishState(ctx, keys, xenbus.StateConnected); err != nil {
		t.Fatal(err)
	}
	for k, v := range keys {
		if got, _ := srv.Get("/local/domain/5/device/vif/0/" + k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if s, err := f.WaitBackendState(ctx, xenbus.StateConnected); err != nil || s != xenbus.StateConnected {
		t.Fatalf("WaitBackendState(Connected) = %v, %v", s, err)
	}
	c.Unwatch(ctx, w)

	// Teardown: the backend follows to Closed.
	go func() {
		for {
			if v, _ := srv.Get("/local/domain/5/device/vif/0/state"); v == "5" {
				break
			}
			time.Sleep(time.Millisecond)
		}
		srv.Set(be+"/state", "6")
	}()
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := f.State(ctx); err != nil || s != xenbus.StateClosed {
		t.Errorf("final state %v, %v", s, err)
	}
}

func TestWaitBackendFailures(t *testing.T) {
	srv, c, ctx := setup(t)
	f, err := xenbus.OpenFrontend(ctx, c, "vif", "0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Set(f.Backend+"/state", "5")
	if _, err := f.WaitBackendState(ctx, xenbus.StateConnected); !errors.Is(err, xenbus.ErrBackendClosed) {
		t.Errorf("closing backend: %v", err)
	}
	srv.Set(f.Backend+"/state", "garbage")
	if _, err := f.WaitBackendState(ctx, xenbus.StateConnected); err == nil {
		t.Error("garbage state accepted")
	}
	srv.Set(f.Backend+"/state", "1")
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := f.WaitBackendState(short, xenbus.StateConnected); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %v", err)
	}
	// The frontend directory vanished: SetState must not recreate it.
	srv.Remove("/local/domain/5/device/vif/0")
	if err := f.SetState(ctx, xenbus.StateClosed); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("SetState on removed device: %v", err)
	}
	if _, ok := srv.Get("/local/domain/5/device/vif/0/state"); ok {
		t.Error("SetState recreated a removed device")
	}
	if err := f.Publish(ctx, map[string]string{"/abs": "x"}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("absolute key: %v", err)
	}
}

// Package xenbus implements the frontend half of the Xen PV device
// handshake on top of xenstore: finding the devices the toolstack gave
// this domain (device/<class>/<id>), reading where their backend lives,
// publishing the frontend's keys and stepping through XenbusState while
// watching the backend's.
//
// The toolstack writes, in each frontend directory, "backend" (the
// backend's directory, in the backend domain's tree), "backend-id" and
// state=Initialising, plus class-specific keys (vif: handle, mac, mtu;
// vbd: virtual-device, device-type). The backend's values are written by
// another domain and are untrusted: they are parsed with errors.
package xenbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/unikgo/unikgo/xenpv/xenstore"
)

// State is enum xenbus_state (xen/include/public/io/xenbus.h), written in
// decimal under each end's "state" key.
type State uint32

// The states. A frontend normally goes Initialising → Initialised or
// Connected once the backend is in InitWait; either end moves to Closing
// and Closed to tear down.
const (
	StateUnknown       State = 0
	StateInitialising  State = 1
	StateInitWait      State = 2 // finished early init, waiting for the peer's details
	StateInitialised   State = 3 // details published, waiting for the peer to connect
	StateConnected     State = 4
	StateClosing       State = 5 // the device is being torn down
	StateClosed        State = 6
	StateReconfiguring State = 7
	StateReconfigured  State = 8
)

var stateNames = [...]string{"Unknown", "Initialising", "InitWait", "Initialised", "Connected", "Closing", "Closed", "Reconfiguring", "Reconfigured"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint32(s))
}

// ParseState parses a state value as found in xenstore. Anything but a
// plain decimal number naming a defined state is an error.
func ParseState(v string) (State, error) {
	if v == "" || len(v) > 2 || (len(v) > 1 && v[0] == '0') {
		return 0, fmt.Errorf("xenbus: bad state %q", trunc(v))
	}
	n, err := strconv.ParseUint(v, 10, 8)
	if err != nil || n >= uint64(len(stateNames)) {
		return 0, fmt.Errorf("xenbus: bad state %q", trunc(v))
	}
	return State(n), nil
}

func trunc(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Devices returns the ids of this domain's devices of class ("vif",
// "vbd", ...): the children of device/<class>, numeric ids in numeric
// order. No such directory means no devices.
func Devices(ctx context.Context, c *xenstore.Client, class string) ([]string, error) {
	if err := validElem(class); err != nil {
		return nil, err
	}
	ids, err := c.Directory(ctx, "device/"+class)
	if errors.Is(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(ids, func(a, b string) int {
		na, ea := strconv.ParseUint(a, 10, 64)
		nb, eb := strconv.ParseUint(b, 10, 64)
		switch {
		case ea == nil && eb == nil:
			return cmpU(na, nb)
		case ea == nil:
			return -1
		case eb == nil:
			return 1
		}
		return 0
	})
	return ids, nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// validElem checks a single path element supplied by the caller.
func validElem(s string) error {
	if err := xenstore.ValidatePath(s); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return &xenstore.Error{Name: "EINVAL", Msg: fmt.Sprintf("%q is not a single path element", trunc(s))}
		}
	}
	return nil
}

// Frontend is one PV device as seen from the frontend domain.
type Frontend struct {
	c *xenstore.Client

	Class, ID string
	// Dir is the frontend directory, relative to this domain's home
	// (device/<class>/<id>); xenstored resolves it.
	Dir string
	// Backend is the backend's directory (absolute) and BackendID the
	// domain it runs in, as the toolstack wrote them.
	Backend   string
	BackendID xenstore.DomID
}

// OpenFrontend reads the frontend directory device/<class>/<id> and checks
// the backend's location: "backend" must be an absolute path and
// "backend-id" a real domain id.
func OpenFrontend(ctx context.Context, c *xenstore.Client, class, id string) (*Frontend, error) {
	if err := validElem(class); err != nil {
		return nil, err
	}
	if err := validElem(id); err != nil {
		return nil, err
	}
	f := &Frontend{c: c, Class: class, ID: id, Dir: "device/" + class + "/" + id}
	be, err := c.Read(ctx, f.Dir+"/backend")
	if err != nil {
		return nil, fmt.Errorf("xenbus: %s: reading backend: %w", f.Dir, err)
	}
	if xenstore.ValidatePath(be) != nil || be[0] != '/' || be == "/" {
		return nil, fmt.Errorf("xenbus: %s: backend %q is not an absolute path", f.Dir, trunc(be))
	}
	f.Backend = be
	bid, err := c.Read(ctx, f.Dir+"/backend-id")
	if err != nil {
		return nil, fmt.Errorf("xenbus: %s: reading backend-id: %w", f.Dir, err)
	}
	if f.BackendID, err = xenstore.ParseDomID(bid); err != nil || f.BackendID >= xenstore.DomIDFirstReserved {
		return nil, fmt.Errorf("xenbus: %s: bad backend-id %q", f.Dir, trunc(bid))
	}
	return f, nil
}

// Read returns the frontend key key (e.g. "mac").
func (f *Frontend) Read(ctx context.Context, key string) (string, error) {
	return f.c.Read(ctx, xenstore.Join(f.Dir, key))
}

// ReadBackend returns the backend key key (e.g. "sectors").
func (f *Frontend) ReadBackend(ctx context.Context, key string) (string, error) {
	return f.c.Read(ctx, xenstore.Join(f.Backend, key))
}

// ReadBackendUint reads a backend key holding an unsigned decimal number.
func (f *Frontend) ReadBackendUint(ctx context.Context, key string) (uint64, error) {
	v, err := f.ReadBackend(ctx, key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("xenbus: backend %s/%s: %q is not a number", f.Backend, key, trunc(v))
	}
	return n, nil
}

// State reads the frontend's own state.
func (f *Frontend) State(ctx context.Context) (State, error) {
	return readState(ctx, f.c, xenstore.Join(f.Dir, "state"))
}

// BackendState reads the backend's state. A backend that has not written
// one yet (or was removed) is StateUnknown.
func (f *Frontend) BackendState(ctx context.Context) (State, error) {
	s, err := readState(ctx, f.c, xenstore.Join(f.Backend, "state"))
	if errors.Is(err, syscall.ENOENT) {
		return StateUnknown, nil
	}
	return s, err
}

func readState(ctx context.Context, c *xenstore.Client, path string) (State, error) {
	v, err := c.Read(ctx, path)
	if err != nil {
		return 0, err
	}
	return ParseState(v)
}

// SetState switches the frontend's state. It does so in a transaction
// that first checks the frontend directory still exists, so that a
// device the toolstack removed is not brought back as a stray "state"
// key (what Linux's xenbus_switch_state guards against too).
func (f *Frontend) SetState(ctx context.Context, s State) error {
	return f.PublishState(ctx, nil, s)
}

// Publish writes keys (relative to the frontend directory) in one
// transaction, so the backend never sees half of them.
func (f *Frontend) Publish(ctx context.Context, keys map[string]string) error {
	return f.publish(ctx, keys, nil)
}

// PublishState writes keys and then the state in one transaction: the
// usual last step of a frontend's setup (ring refs, event channel,
// features, then Initialised or Connected).
func (f *Frontend) PublishState(ctx context.Context, keys map[string]string, s State) error {
	return f.publish(ctx, keys, &s)
}

func (f *Frontend) publish(ctx context.Context, keys map[string]string, s *State) error {
	names := make([]string, 0, len(keys))
	for k := range keys {
		if err := xenstore.ValidatePath(k); err != nil || k[0] == '/' {
			return &xenstore.Error{Name: "EINVAL", Msg: fmt.Sprintf("bad frontend key %q", trunc(k))}
		}
		names = append(names, k)
	}
	slices.Sort(names)
	return f.c.Transaction(ctx, func(tx *xenstore.Tx) error {
		if ok, err := tx.Exists(ctx, f.Dir); err != nil {
			return err
		} else if !ok {
			return &xenstore.Error{Name: "ENOENT", Msg: f.Dir + " was removed"}
		}
		for _, k := range names {
			if err := tx.Write(ctx, xenstore.Join(f.Dir, k), keys[k]); err != nil {
				return err
			}
		}
		if s != nil {
			return tx.Write(ctx, xenstore.Join(f.Dir, "state"), strconv.FormatUint(uint64(*s), 10))
		}
		return nil
	})
}

// ErrBackendClosed is returned by WaitBackendState when the backend
// starts tearing down while the frontend waits for an earlier state.
var ErrBackendClosed = errors.New("xenbus: backend is closing")

// unwatchTimeout bounds the clean-up of WaitBackend's watch.
const unwatchTimeout = 5 * time.Second

// WaitBackend watches the backend's state until ok accepts it, and returns
// that state. A state value the backend wrote that does not parse is an
// error. It returns ctx.Err() if ctx ends first, and the client's error if
// the client stops.
func (f *Frontend) WaitBackend(ctx context.Context, ok func(State) bool) (State, error) {
	statePath := xenstore.Join(f.Backend, "state")
	w, err := f.c.Watch(ctx, statePath, "")
	if err != nil {
		return 0, err
	}
	defer func() {
		// Unwatch even if ctx has ended, but do not hang on a silent server.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unwatchTimeout)
		defer cancel()
		f.c.Unwatch(uctx, w)
	}()
	for {
		// Read after every event, including the one a new watch fires
		// at once: the state may already be the one wanted.
		s, err := f.BackendState(ctx)
		if err != nil {
			return s, err
		}
		if ok(s) {
			return s, nil
		}
		select {
		case _, open := <-w.Events():
			if !open {
				if err := f.c.Err(); err != nil {
					return s, err
				}
				return s, xenstore.ErrClosed
			}
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
}

// WaitBackendState waits until the backend reaches want. If the backend
// moves to Closing or Closed while want is an earlier state, it returns
// ErrBackendClosed instead of waiting forever.
func (f *Frontend) WaitBackendState(ctx context.Context, want State) (State, error) {
	s, err := f.WaitBackend(ctx, func(s State) bool {
		return s == want || (want < StateClosing && (s == StateClosing || s == StateClosed))
	})
	if err == nil && s != want {
		return s, fmt.Errorf("%w (state %v while waiting for %v)", ErrBackendClosed, s, want)
	}
	return s, err
}

// Close runs the frontend's side of an orderly teardown: state Closing,
// wait for the backend to be Closing or Closed, then state Closed.
func (f *Frontend) Close(ctx context.Context) error {
	if err := f.SetState(ctx, StateClosing); err != nil {
		return err
	}
	if _, err := f.WaitBackend(ctx, func(s State) bool {
		return s == StateClosing || s == StateClosed || s == StateUnknown
	}); err != nil {
		return err
	}
	return f.SetState(ctx, StateClosed)
}

package virtio_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unikgo/unikgo/kernel/dma"
	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/pci/pcitest"
	"github.com/unikgo/unikgo/virtio"
	"github.com/unikgo/unikgo/virtio/virtiotest"
)

var addr = pci.Addr{Bus: 0, Device: 4, Function: 0}

type rig struct {
	h   *pcitest.Host
	mem *dmatest.Memory
	sim *virtiotest.Device
	pci *pci.Device
}

func newRig(t *testing.T, cfg virtiotest.Config) *rig {
	t.Helper()
	if cfg.DeviceID == 0 {
		cfg.DeviceID = 0x1041
	}
	if cfg.NumQueues == 0 {
		cfg.NumQueues = 2
	}
	r := &rig{h: pcitest.NewHost(), mem: dmatest.New(16 << 20)}
	r.sim = virtiotest.New(r.h, addr, r.mem, cfg)
	p, err := pci.Open(r.h, addr)
	if err != nil {
		t.Fatal(err)
	}
	r.pci = p
	return r
}

func (r *rig) opts(intr bool) virtio.Options {
	o := virtio.Options{Mem: r.mem, PollInterval: 50 * time.Microsecond, ResetTimeout: 100 * time.Millisecond}
	if intr {
		o.Interrupts = r.h.IRQs.Alloc
	}
	return o
}

// checkClean fails the test if the driver broke the protocol.
func (r *rig) checkClean(t *testing.T) {
	t.Helper()
	for _, e := range r.sim.Errors() {
		t.Errorf("driver error seen by the device: %s", e)
	}
}

// start opens the device, negotiates want, sets up queues and starts it.
func (r *rig) start(t *testing.T, intr bool, want uint64, sizes ...int) (*virtio.Device, []*virtio.Queue) {
	t.Helper()
	d, err := virtio.Open(context.Background(), r.pci, r.opts(intr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Negotiate(want); err != nil {
		t.Fatal(err)
	}
	qs, err := d.SetupQueues(sizes)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	return d, qs
}

func echo(c *virtiotest.Chain) uint32 { return uint32(c.Write(c.Bytes())) }

// wait takes one used element from q, waiting on Ready.
func wait(t *testing.T, q *virtio.Queue) virtio.Used {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		u, ok, err := q.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return u
		}
		select {
		case <-q.Ready():
		case <-deadline:
			t.Fatal("no used element within 5s")
		}
	}
}

func alloc(t *testing.T, m dma.Allocator, n int) *dma.Region {
	t.Helper()
	r, err := m.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func roundTrip(t *testing.T, mem *dmatest.Memory, q *virtio.Queue, payload string) {
	t.Helper()
	in, out := alloc(t, mem, len(payload)), alloc(t, mem, 100)
	defer mem.Free(in)
	defer mem.Free(out)
	copy(in.Bytes, payload)
	if err := q.Add("tok", virtio.Buffer{Addr: in.Phys, Len: uint32(len(payload))}, virtio.Buffer{Addr: out.Phys, Len: 100, Writable: true}); err != nil {
		t.Fatal(err)
	}
	q.Kick()
	u := wait(t, q)
	if u.Token != "tok" || u.Len != uint32(len(payload)) || u.Err != nil || string(out.Bytes[:u.Len]) != payload {
		t.Fatalf("used %+v, buffer %q; want %q back", u, out.Bytes[:u.Len], payload)
	}
}

func TestInitAndInterruptModes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vectors int
		intr    bool
		limit   int
		refuse  bool
		refuseQ bool
		mode    virtio.IntrMode
		qvec    []uint16
	}{
		{name: "dedicated", vectors: 3, intr: true, mode: virtio.IntrDedicated, qvec: []uint16{1, 2}},
		{name: "bigger table", vectors: 8, intr: true, mode: virtio.IntrDedicated, qvec: []uint16{1, 2}},
		{name: "one vector", vectors: 1, intr: true, mode: virtio.IntrShared, qvec: []uint16{0, 0}},
		{name: "vectors run out", vectors: 3, intr: true, limit: 2, mode: virtio.IntrShared, qvec: []uint16{0, 0}},
		{name: "no vectors at all", vectors: 3, intr: true, limit: -1, mode: virtio.IntrPoll, qvec: []uint16{virtio.NoVector, virtio.NoVector}},
		{name: "no MSI-X", intr: true, mode: virtio.IntrPoll, qvec: []uint16{virtio.NoVector, virtio.NoVector}},
		{name: "vectors refused", vectors: 3, intr: true, refuse: true, mode: virtio.IntrPoll, qvec: []uint16{virtio.NoVector, virtio.NoVector}},
		{name: "queue vectors refused", vectors: 3, intr: true, refuseQ: true, mode: virtio.IntrPoll, qvec: []uint16{virtio.NoVector, virtio.NoVector}},
		{name: "no interrupt allocator", vectors: 3, mode: virtio.IntrPoll, qvec: []uint16{virtio.NoVector, virtio.NoVector}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1 | virtio.FeatureAccessPlatform | 1<<5 | 1<<7, MSIXVectors: tc.vectors})
			r.sim.RefuseVectors = tc.refuse
			r.sim.RefuseQueueVectors = tc.refuseQ
			switch {
			case tc.limit > 0:
				r.h.IRQs.SetLimit(tc.limit)
			case tc.limit < 0:
				r.h.IRQs.SetLimit(1)
				blocker, _ := r.h.IRQs.Alloc()
				defer blocker.Close()
			}
			r.sim.Queue(0).Serve(1, echo)
			r.sim.Queue(1).Serve(1, echo)
			d, qs := r.start(t, tc.intr, 1<<5|1<<6, 128, 64)
			if got, want := r.sim.DriverFeatures(), uint64(virtio.FeatureVersion1|virtio.FeatureAccessPlatform|1<<5); got != want {
				t.Errorf("driver features %#x, want %#x", got, want)
			}
			if d.Mode() != tc.mode {
				t.Errorf("mode %v, want %v", d.Mode(), tc.mode)
			}
			for i, q := range qs {
				sq := r.sim.Queue(i)
				if sq.Size() != q.Size() || !sq.Enabled() || sq.Vector() != tc.qvec[i] {
					t.Errorf("queue %d: device sees size %d enabled %v vector %#x; driver size %d, want vector %#x", i, sq.Size(), sq.Enabled(), sq.Vector(), q.Size(), tc.qvec[i])
				}
			}
			if qs[0].Size() != 128 || qs[1].Size() != 64 {
				t.Errorf("sizes %d, %d", qs[0].Size(), qs[1].Size())
			}
			if s := r.sim.Status(); s != 0xf {
				t.Errorf("status %#x, want 0xf", s)
			}
			for i := 0; i < 20; i++ {
				roundTrip(t, r.mem, qs[i%2], fmt.Sprintf("hello %d", i))
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if r.sim.Status() != 0 || r.pci.Command()&pci.CmdBusMaster != 0 {
				t.Errorf("after Close: status %#x, command %#x", r.sim.Status(), r.pci.Command())
			}
			if r.mem.Live() != 0 {
				t.Errorf("%d DMA regions live after Close", r.mem.Live())
			}
			if n := r.h.IRQs.Live(); n > 1 || (n == 1 && tc.limit >= 0) {
				t.Errorf("%d vectors live after Close", n)
			}
			r.checkClean(t)
		})
	}
}

func TestQueueSizes(t *testing.T) {
	for _, tc := range []struct {
		max, want, got int
		err            string
	}{
		{max: 256, want: 1024, got: 256},
		{max: 1000, want: 1024, got: 512},
		{max: 256, want: 100, got: 64},
		{max: 65535, want: 65535, got: 32768},
		{max: 256, want: 0, err: "entries"},
	} {
		t.Run(fmt.Sprint(tc.max, tc.want), func(t *testing.T) {
			r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, QueueSize: tc.max, NumQueues: 1})
			d, err := virtio.Open(context.Background(), r.pci, r.opts(false))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			d.Negotiate(0)
			qs, err := d.SetupQueues([]int{tc.want})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("SetupQueues: %v, want error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if qs[0].Size() != tc.got || r.sim.Queue(0).Size() != tc.got {
				t.Errorf("size %d (device %d), want %d", qs[0].Size(), r.sim.Queue(0).Size(), tc.got)
			}
			r.checkClean(t)
		})
	}
	t.Run("too many queues", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, NumQueues: 1})
		d, _ := virtio.Open(context.Background(), r.pci, r.opts(false))
		defer d.Close()
		d.Negotiate(0)
		if _, err := d.SetupQueues([]int{8, 8}); err == nil {
			t.Fatal("two queues on a one-queue device")
		}
	})
	t.Run("queue unavailable", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, NumQueues: 2, QueueSizes: []int{8, 0}})
		d, _ := virtio.Open(context.Background(), r.pci, r.opts(false))
		defer d.Close()
		d.Negotiate(0)
		if _, err := d.SetupQueues([]int{8, 8}); err == nil || !strings.Contains(err.Error(), "not available") {
			t.Fatalf("SetupQueues: %v", err)
		}
		if r.mem.Live() != 0 {
			t.Errorf("%d regions live after a failed setup", r.mem.Live())
		}
	})
}

func TestChains(t *testing.T) {
	r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, MSIXVectors: 3, QueueSize: 16})
	// Four workers complete chains out of order.
	r.sim.Queue(0).Serve(4, func(c *virtiotest.Chain) uint32 {
		time.Sleep(time.Duration(c.Head%3) * 100 * time.Microsecond)
		return uint32(c.Write(c.Bytes()))
	})
	d, qs := r.start(t, true, 0, 16, 16)
	defer d.Close()
	q := qs[0]
	buf := alloc(t, r.mem, 16*dma.PageSize)

	if err := q.Add(1); err == nil {
		t.Error("empty chain accepted")
	}
	if err := q.Add(1, virtio.Buffer{Addr: buf.Phys, Len: 0}); err == nil {
		t.Error("zero-length buffer accepted")
	}
	if err := q.Add(1, virtio.Buffer{Addr: buf.Phys, Len: 1, Writable: true}, virtio.Buffer{Addr: buf.Phys, Len: 1}); err == nil {
		t.Error("readable after writable accepted")
	}
	if q.Free() != 16 {
		t.Fatalf("Free = %d after refused chains", q.Free())
	}

	// Chains of 1 to 5 descriptors: 3 readable pieces of the message and
	// the rest writable, until the ring is full.
	type req struct {
		msg string
		out []*dma.Region
	}
	sent := map[*req]bool{}
	var reqs []*req
	for i := 0; ; i++ {
		n := 1 + i%3
		msg := fmt.Sprintf("message %02d", i)
		rq := &req{msg: msg}
		var bufs []virtio.Buffer
		in := alloc(t, r.mem, len(msg))
		copy(in.Bytes, msg)
		bufs = append(bufs, virtio.Buffer{Addr: in.Phys, Len: 4}, virtio.Buffer{Addr: in.Phys + 4, Len: uint32(len(msg) - 4)})
		for k := 0; k < n; k++ {
			o := alloc(t, r.mem, 4)
			rq.out = append(rq.out, o)
			bufs = append(bufs, virtio.Buffer{Addr: o.Phys, Len: 4, Writable: true})
		}
		err := q.Add(rq, bufs...)
		if errors.Is(err, virtio.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sent[rq] = true
		reqs = append(reqs, rq)
	}
	if q.Free() > 4 || len(reqs) < 3 {
		t.Fatalf("ring not full: %d free after %d chains", q.Free(), len(reqs))
	}
	q.Kick()
	for len(sent) > 0 {
		u := wait(t, q)
		rq, ok := u.Token.(*req)
		if !ok || !sent[rq] {
			t.Fatalf("token %v returned twice or never sent", u.Token)
		}
		delete(sent, rq)
		var got []byte
		for _, o := range rq.out {
			got = append(got, o.Bytes[:4]...)
		}
		want := rq.msg
		if len(want) > len(got) {
			want = want[:len(got)]
		}
		if u.Len != uint32(len(want)) || !bytes.Equal(got[:u.Len], []byte(want)) {
			t.Errorf("chain %q came back as %q (len %d)", rq.msg, got, u.Len)
		}
	}
	if q.Free() != 16 || q.Outstanding() != 0 {
		t.Errorf("after all completions: %d free, %d outstanding", q.Free(), q.Outstanding())
	}
	r.checkClean(t)
}

func TestHostileUsed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		act    func(sq *virtiotest.Queue, c *virtiotest.Chain)
		broken bool
		lenErr bool
	}{
		{name: "id past the ring", act: func(sq *virtiotest.Queue, c *virtiotest.Chain) { sq.PushRaw(1000, 0) }, broken: true},
		{name: "id of a free descriptor", act: func(sq *virtiotest.Queue, c *virtiotest.Chain) { sq.PushRaw(uint32(c.Head)+5, 0) }, broken: true},
		{name: "id inside a chain", act: func(sq *virtiotest.Queue, c *virtiotest.Chain) { sq.PushRaw(uint32(c.Head)+1, 0) }, broken: true},
		{name: "index far ahead", act: func(sq *virtiotest.Queue, c *virtiotest.Chain) { sq.SetUsedIdx(7) }, broken: true},
		{name: "index backwards", act: func(sq *virtiotest.Queue, c *virtiotest.Chain) { sq.SetUsedIdx(0xffff) }, broken: true},
		{name: "same chain twice", act: func(sq *virtiotest.Queue, c *virtiotest.Chain) { sq.Complete(c, 1); sq.Complete(c, 1) }, broken: true},
		{name: "length past the buffers", act: func(sq *virtiotest.Queue, c *virtiotest.Chain) { sq.Complete(c, 5000) }, lenErr: true},
		{name: "huge length", act: func(sq *virtiotest.Queue, c *virtiotest.Chain) { sq.Complete(c, 0xffffffff) }, lenErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, MSIXVectors: 3, NumQueues: 1, QueueSize: 8})
			d, qs := r.start(t, true, 0, 8)
			defer d.Close()
			q := qs[0]
			b := alloc(t, r.mem, 4096)
			if err := q.Add("a", virtio.Buffer{Addr: b.Phys, Len: 16}, virtio.Buffer{Addr: b.Phys + 16, Len: 16, Writable: true}, virtio.Buffer{Addr: b.Phys + 32, Len: 16, Writable: true}); err != nil {
				t.Fatal(err)
			}
			q.Kick()
			sq := r.sim.Queue(0)
			c, err := sq.WaitPop(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			tc.act(sq, c)
			deadline := time.After(5 * time.Second)
			var gotErr error
			var used []virtio.Used
			for gotErr == nil && len(used) < 2 {
				u, ok, err := q.Next()
				if err != nil {
					gotErr = err
					break
				}
				if ok {
					used = append(used, u)
					continue
				}
				if len(used) > 0 && !tc.broken {
					break
				}
				select {
				case <-q.Ready():
				case <-deadline:
					t.Fatalf("nothing happened; used %v", used)
				}
			}
			if tc.broken {
				if !errors.Is(gotErr, virtio.ErrBroken) {
					t.Fatalf("Next: %v (used %v), want ErrBroken", gotErr, used)
				}
				if _, _, err := q.Next(); !errors.Is(err, virtio.ErrBroken) {
					t.Errorf("second Next: %v, want ErrBroken again", err)
				}
				if err := q.Add("b", virtio.Buffer{Addr: b.Phys, Len: 1}); !errors.Is(err, virtio.ErrBroken) {
					t.Errorf("Add on a broken queue: %v", err)
				}
				if tok := q.Drain(); len(tok) != 1 && tc.name != "same chain twice" {
					t.Errorf("Drain = %v", tok)
				}
				return
			}
			if len(used) != 1 || used[0].Token != "a" || !errors.Is(used[0].Err, virtio.ErrLength) {
				t.Fatalf("used %+v, err %v; want one element with ErrLength", used, gotErr)
			}
			if q.Free() != 8 {
				t.Errorf("Free = %d after a bad-length completion", q.Free())
			}
			roundTripAfter(t, r, q)
		})
	}
}

// roundTripAfter checks that the queue still works.
func roundTripAfter(t *testing.T, r *rig, q *virtio.Queue) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := r.sim.Queue(q.Index()).WaitPop(context.Background())
		if err == nil {
			r.sim.Queue(q.Index()).Complete(c, uint32(c.Write(c.Bytes())))
		}
	}()
	roundTrip(t, r.mem, q, "still alive")
	<-done
}

func TestCaps(t *testing.T) {
	common := virtiotest.CapSpec{Type: virtio.CapCommonCfg, BAR: 4, Offset: 0, Length: 0x1000}
	isr := virtiotest.CapSpec{Type: virtio.CapISRCfg, BAR: 4, Offset: 0x1000, Length: 0x1000}
	dev := virtiotest.CapSpec{Type: virtio.CapDeviceCfg, BAR: 4, Offset: 0x2000, Length: 0x1000}
	notify := virtiotest.CapSpec{Type: virtio.CapNotifyCfg, BAR: 4, Offset: 0x3000, Length: 0x1000, Multiplier: 4}
	with := func(c virtiotest.CapSpec, f func(*virtiotest.CapSpec)) virtiotest.CapSpec { f(&c); return c }
	for _, tc := range []struct {
		name    string
		caps    []virtiotest.CapSpec
		openErr error
		qErr    bool
	}{
		{name: "default", caps: []virtiotest.CapSpec{common, isr, dev, notify}},
		{name: "no device config", caps: []virtiotest.CapSpec{common, isr, notify}},
		{name: "no common", caps: []virtiotest.CapSpec{isr, dev, notify}, openErr: virtio.ErrNoModern},
		{name: "no caps (legacy)", caps: []virtiotest.CapSpec{}, openErr: virtio.ErrNoModern},
		{name: "common too short", caps: []virtiotest.CapSpec{with(common, func(c *virtiotest.CapSpec) { c.Length = 0x20 }), isr, notify}, openErr: virtio.ErrNoModern},
		{name: "common past the BAR", caps: []virtiotest.CapSpec{with(common, func(c *virtiotest.CapSpec) { c.Offset = 0x3fe0; c.Length = 0x38 }), isr, notify}, openErr: virtio.ErrNoModern},
		{name: "length wraps", caps: []virtiotest.CapSpec{with(common, func(c *virtiotest.CapSpec) { c.Offset = 0xffffff00; c.Length = 0x1000 }), isr, notify}, openErr: virtio.ErrNoModern},
		{name: "BAR 6", caps: []virtiotest.CapSpec{with(common, func(c *virtiotest.CapSpec) { c.BAR = 6 }), isr, notify}, openErr: virtio.ErrNoModern},
		{name: "BAR not implemented", caps: []virtiotest.CapSpec{with(common, func(c *virtiotest.CapSpec) { c.BAR = 2 }), isr, notify}, openErr: virtio.ErrNoModern},
		{name: "cap_len short", caps: []virtiotest.CapSpec{with(common, func(c *virtiotest.CapSpec) { c.CapLen = 12 }), isr, notify}, openErr: virtio.ErrNoModern},
		{name: "notify cap_len without multiplier", caps: []virtiotest.CapSpec{common, isr, with(notify, func(c *virtiotest.CapSpec) { c.CapLen = 16 })}, openErr: virtio.ErrNoModern},
		{name: "bad first, good second", caps: []virtiotest.CapSpec{with(common, func(c *virtiotest.CapSpec) { c.BAR = 3 }), common, isr, dev, notify}},
		{name: "unknown types ignored", caps: []virtiotest.CapSpec{{Type: 8, BAR: 4}, {Type: virtio.CapPCICfg, BAR: 0}, common, isr, notify}},
		{name: "notify offset outside", caps: []virtiotest.CapSpec{common, isr, with(notify, func(c *virtiotest.CapSpec) { c.Length = 4 })}, qErr: true},
		{name: "notify multiplier 0", caps: []virtiotest.CapSpec{common, isr, with(notify, func(c *virtiotest.CapSpec) { c.Length = 2; c.Multiplier = 0 })}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, Caps: tc.caps, NumQueues: 2})
			r.sim.Queue(0).Serve(1, echo)
			r.sim.Queue(1).Serve(1, echo)
			d, err := virtio.Open(context.Background(), r.pci, r.opts(false))
			if tc.openErr != nil {
				if !errors.Is(err, tc.openErr) {
					t.Fatalf("Open: %v, want %v", err, tc.openErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if _, err := d.Negotiate(0); err != nil {
				t.Fatal(err)
			}
			qs, err := d.SetupQueues([]int{8, 8})
			if tc.qErr {
				if !errors.Is(err, virtio.ErrBadCap) {
					t.Fatalf("SetupQueues: %v, want ErrBadCap", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			roundTrip(t, r.mem, qs[0], "zero")
			roundTrip(t, r.mem, qs[1], "one")
			r.checkClean(t)
		})
	}
}

func TestNegotiation(t *testing.T) {
	t.Run("no VERSION_1", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: 1 << 5})
		d, err := virtio.Open(context.Background(), r.pci, r.opts(false))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.Negotiate(1 << 5); !errors.Is(err, virtio.ErrNoVersion1) {
			t.Fatalf("Negotiate: %v", err)
		}
		if r.sim.Status()&virtio.StatusFailed == 0 {
			t.Error("FAILED not set")
		}
	})
	t.Run("FEATURES_OK refused", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1})
		r.sim.RefuseFeatures = true
		d, _ := virtio.Open(context.Background(), r.pci, r.opts(false))
		defer d.Close()
		if _, err := d.Negotiate(0); !errors.Is(err, virtio.ErrFeatures) {
			t.Fatalf("Negotiate: %v", err)
		}
		if r.sim.Status()&virtio.StatusFailed == 0 {
			t.Error("FAILED not set")
		}
	})
	t.Run("only offered bits", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1 | 1<<3 | virtio.FeatureEventIdx | virtio.FeatureRingPacked})
		d, _ := virtio.Open(context.Background(), r.pci, r.opts(false))
		defer d.Close()
		got, err := d.Negotiate(1<<3 | 1<<4)
		if err != nil {
			t.Fatal(err)
		}
		if got != virtio.FeatureVersion1|1<<3 || d.Features() != got || r.sim.DriverFeatures() != got {
			t.Errorf("negotiated %#x (device sees %#x)", got, r.sim.DriverFeatures())
		}
		r.checkClean(t)
	})
}

func TestReset(t *testing.T) {
	t.Run("slow reset", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1})
		r.sim.ResetDelay = 5
		d, err := virtio.Open(context.Background(), r.pci, r.opts(false))
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
	})
	t.Run("stuck reset at Open", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1})
		r.sim.StuckReset = true
		if _, err := virtio.Open(context.Background(), r.pci, r.opts(false)); !errors.Is(err, virtio.ErrResetTimeout) {
			t.Fatalf("Open: %v", err)
		}
	})
	t.Run("stuck reset at Close leaks the rings", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, MSIXVectors: 3})
		d, _ := r.start(t, true, 0, 8, 8)
		r.sim.Locked(func() { r.sim.StuckReset = true })
		if err := d.Close(); !errors.Is(err, virtio.ErrResetTimeout) {
			t.Fatalf("Close: %v", err)
		}
		if r.mem.Live() != 2 {
			t.Errorf("%d regions live, want the 2 rings kept", r.mem.Live())
		}
		if r.pci.Command()&pci.CmdBusMaster != 0 || r.h.IRQs.Live() != 0 {
			t.Errorf("bus master still on or vectors live")
		}
	})
	t.Run("context", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1})
		r.sim.StuckReset = true
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		o := r.opts(false)
		o.ResetTimeout = time.Hour
		if _, err := virtio.Open(ctx, r.pci, o); !errors.Is(err, context.Canceled) {
			t.Fatalf("Open: %v", err)
		}
	})
}

func TestConfig(t *testing.T) {
	for _, intr := range []bool{true, false} {
		t.Run(fmt.Sprint("interrupts ", intr), func(t *testing.T) {
			r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, MSIXVectors: 3, DevConfig: []byte{1, 2, 3, 4, 5, 6, 7, 8}})
			d, _ := r.start(t, intr, 0, 8, 8)
			defer d.Close()
			var got uint32
			err := d.ReadConfig(func(cfg pci.Registers) error {
				if cfg.Size() < 8 {
					return errors.New("short")
				}
				got = cfg.Read32(4)
				return nil
			})
			if err != nil || got != 0x08070605 {
				t.Fatalf("ReadConfig: %#x, %v", got, err)
			}
			r.sim.SetConfig(4, []byte{9})
			select {
			case <-d.ConfigChanged():
			case <-time.After(5 * time.Second):
				t.Fatal("no configuration change wake-up")
			}
			d.ReadConfig(func(cfg pci.Registers) error { got = cfg.Read32(4); return nil })
			if got != 0x08070609 {
				t.Errorf("after change: %#x", got)
			}
			r.sim.SetNeedsReset()
			<-d.ConfigChanged()
			if !d.NeedsReset() {
				t.Error("NeedsReset false")
			}
		})
	}
	t.Run("unstable", func(t *testing.T) {
		r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, DevConfig: []byte{1, 2, 3, 4}})
		r.sim.UnstableConfig = true
		d, _ := virtio.Open(context.Background(), r.pci, r.opts(false))
		defer d.Close()
		if err := d.ReadConfig(func(pci.Registers) error { return nil }); !errors.Is(err, virtio.ErrConfigUnstable) {
			t.Fatalf("ReadConfig: %v", err)
		}
	})
}

func TestNoNotify(t *testing.T) {
	r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, MSIXVectors: 3, NumQueues: 1})
	r.sim.Queue(0).Serve(1, echo)
	d, qs := r.start(t, true, 0, 8)
	defer d.Close()
	roundTrip(t, r.mem, qs[0], "one")
	n := r.sim.Queue(0).Notifies.Load()
	r.sim.Queue(0).SetNoNotify(true)
	roundTrip(t, r.mem, qs[0], "two") // the device's own polling finds it
	if got := r.sim.Queue(0).Notifies.Load(); got != n {
		t.Errorf("driver notified %d times with NO_NOTIFY set", got-n)
	}
	r.checkClean(t)
}

// TestNoInterrupt: SetInterrupts(false) sets VIRTQ_AVAIL_F_NO_INTERRUPT,
// which Add keeps; a device that honours it raises nothing, and Pending
// still counts what it used.
func TestNoInterrupt(t *testing.T) {
	r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, MSIXVectors: 3, NumQueues: 1})
	d, qs := r.start(t, true, 0, 8)
	defer d.Close()
	q, sq := qs[0], r.sim.Queue(0)
	buf := alloc(t, r.mem, 64)
	defer r.mem.Free(buf)
	use := func(tok string) {
		t.Helper()
		if err := q.Add(tok, virtio.Buffer{Addr: buf.Phys, Len: 64, Writable: true}); err != nil {
			t.Fatal(err)
		}
		q.Kick()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := sq.WaitPop(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sq.Complete(c, 3) // raises the vector at once, if it raises it
	}
	interrupted := func() bool {
		select {
		case <-q.Ready():
			return true
		default:
			return false
		}
	}
	if !sq.Interrupts() {
		t.Fatal("NO_INTERRUPT set before SetInterrupts(false)")
	}
	q.SetInterrupts(false)
	use("a")
	use("b")
	if sq.Interrupts() {
		t.Error("the device sees interrupts wanted after SetInterrupts(false) and two Adds")
	}
	if interrupted() {
		t.Error("interrupted with NO_INTERRUPT set")
	}
	if got := q.Pending(); got != 2 {
		t.Errorf("Pending = %d, want 2", got)
	}
	q.SetInterrupts(true)
	if !sq.Interrupts() {
		t.Error("NO_INTERRUPT still set after SetInterrupts(true)")
	}
	use("c")
	if !interrupted() {
		t.Error("not interrupted with interrupts on")
	}
	for _, want := range []string{"a", "b", "c"} {
		if u := wait(t, q); u.Token != want || u.Len != 3 {
			t.Errorf("used %+v, want token %q, 3 bytes", u, want)
		}
	}
	if got := q.Pending(); got != 0 {
		t.Errorf("Pending = %d after taking all, want 0", got)
	}
	r.checkClean(t)
}

// TestConcurrent has many goroutines add and complete chains at once.
func TestConcurrent(t *testing.T) {
	r := newRig(t, virtiotest.Config{Features: virtio.FeatureVersion1, MSIXVectors: 3, NumQueues: 1, QueueSize: 64})
	r.sim.Queue(0).Serve(3, echo)
	d, qs := r.start(t, true, 0, 64)
	defer d.Close()
	q := qs[0]
	var mu sync.Mutex
	waiters := map[int]chan virtio.Used{}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-q.Ready():
			}
			for {
				u, ok, err := q.Next()
				if err != nil || !ok {
					break
				}
				mu.Lock()
				waiters[u.Token.(int)] <- u
				mu.Unlock()
			}
		}
	}()
	defer close(stop)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			in, _ := r.mem.Alloc(64)
			out, _ := r.mem.Alloc(64)
			for i := 0; i < 50; i++ {
				id := g*1000 + i
				msg := fmt.Sprintf("g%d i%d", g, i)
				copy(in.Bytes, msg)
				ch := make(chan virtio.Used, 1)
				mu.Lock()
				waiters[id] = ch
				mu.Unlock()
				for {
					err := q.Add(id, virtio.Buffer{Addr: in.Phys, Len: uint32(len(msg))}, virtio.Buffer{Addr: out.Phys, Len: 64, Writable: true})
					if err == nil {
						break
					}
					if !errors.Is(err, virtio.ErrFull) {
						t.Error(err)
						return
					}
					time.Sleep(10 * time.Microsecond)
				}
				q.Kick()
				u := <-ch
				if string(out.Bytes[:u.Len]) != msg {
					t.Errorf("got %q, want %q", out.Bytes[:u.Len], msg)
				}
			}
		}(g)
	}
	wg.Wait()
	r.checkClean(t)
}

func TestFind(t *testing.T) {
	h := pcitest.NewHost()
	mem := dmatest.New(1 << 20)
	virtiotest.New(h, pci.Addr{Device: 3}, mem, virtiotest.Config{DeviceID: 0x1042, NumQueues: 1, Features: virtio.FeatureVersion1})
	virtiotest.New(h, pci.Addr{Device: 4}, mem, virtiotest.Config{DeviceID: 0x1041, NumQueues: 2, Features: virtio.FeatureVersion1})
	legacy := pcitest.NewFunction(virtio.VendorID, virtio.TransitionalBlock, 0x010000)
	legacy.Poke(pci.RegSubsystem, virtio.TypeBlock)
	h.Add(pci.Addr{Device: 5}, legacy)
	var got []string
	for _, d := range virtio.Find(h, virtio.TypeBlock) {
		got = append(got, d.Addr.String())
	}
	if strings.Join(got, " ") != "00:03.0 00:05.0" {
		t.Fatalf("Find(block) = %v", got)
	}
	p, _ := pci.Open(h, pci.Addr{Device: 5})
	if _, err := virtio.Open(context.Background(), p, virtio.Options{Mem: mem}); !errors.Is(err, virtio.ErrNoModern) {
		t.Fatalf("Open of a legacy-only transitional device: %v", err)
	}
}

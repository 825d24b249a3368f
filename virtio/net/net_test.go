package net_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unikgo/unikgo/kernel/dma/dmatest"
	"github.com/unikgo/unikgo/netdev"
	"github.com/unikgo/unikgo/pci"
	"github.com/unikgo/unikgo/pci/pcitest"
	"github.com/unikgo/unikgo/virtio"
	vnet "github.com/unikgo/unikgo/virtio/net"
	"github.com/unikgo/unikgo/virtio/virtiotest"
)

type rig struct {
	h    *pcitest.Host
	mem  *dmatest.Memory
	sim  *virtiotest.Device
	p    *pci.Device
	tx   chan []byte
	mu   sync.Mutex
	errs []string
}

type setup struct {
	features uint64 // besides VERSION_1
	mac      []byte
	status   uint16
	mtu      uint16
	vectors  int
	noServe  bool // the transmit queue is not served
}

var testMAC = []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func newRig(t *testing.T, s setup) *rig {
	t.Helper()
	if s.mac == nil {
		s.mac = testMAC
	}
	cfg := make([]byte, 12)
	copy(cfg, s.mac)
	binary.LittleEndian.PutUint16(cfg[6:], s.status)
	binary.LittleEndian.PutUint16(cfg[10:], s.mtu)
	r := &rig{h: pcitest.NewHost(), mem: dmatest.New(64 << 20), tx: make(chan []byte, 1024)}
	r.sim = virtiotest.New(r.h, pci.Addr{Device: 6}, r.mem, virtiotest.Config{
		DeviceID: 0x1041, Features: virtio.FeatureVersion1 | s.features, NumQueues: 2,
		DevConfig: cfg, MSIXVectors: s.vectors,
	})
	if !s.noServe {
		r.sim.Queue(1).Serve(1, func(c *virtiotest.Chain) uint32 {
			b := c.Bytes()
			if len(c.Writable) != 0 || len(b) < vnet.HeaderLen || !bytes.Equal(b[:vnet.HeaderLen], make([]byte, vnet.HeaderLen)) {
				r.errorf("transmit chain: %d writable, header %x", len(c.Writable), b[:min(len(b), vnet.HeaderLen)])
			}
			r.tx <- b[vnet.HeaderLen:]
			return 0
		})
	}
	p, err := pci.Open(r.h, pci.Addr{Device: 6})
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	return r
}

func (r *rig) errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *rig) check(t *testing.T) {
	t.Helper()
	for _, e := range r.sim.Errors() {
		t.Errorf("virtio error seen by the device: %s", e)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		t.Errorf("virtio-net error seen by the device: %s", e)
	}
}

func (r *rig) open(t *testing.T, cfg vnet.Config) (*vnet.NIC, error) {
	t.Helper()
	return vnet.New(context.Background(), r.p, virtio.Options{Mem: r.mem, Interrupts: r.h.IRQs.Alloc, PollInterval: 20 * time.Microsecond, ResetTimeout: 100 * time.Millisecond}, cfg)
}

func (r *rig) mustOpen(t *testing.T, cfg vnet.Config) *vnet.NIC {
	t.Helper()
	n, err := r.open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// inject has the device receive a frame behind header hdr (a zero header
// if nil), reporting length n (header plus frame if -1).
func (r *rig) inject(t *testing.T, hdr, frame []byte, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.sim.Queue(0).WaitPop(ctx)
	if err != nil {
		t.Errorf("device found no receive buffer: %v", err)
		return
	}
	if hdr == nil {
		hdr = make([]byte, vnet.HeaderLen)
		hdr[10] = 1 // num_buffers
	}
	w := c.Write(append(append([]byte(nil), hdr...), frame...))
	if n < 0 {
		n = int64(w)
	}
	r.sim.Queue(0).Complete(c, uint32(n))
}

func frame(i, size int) []byte {
	f := make([]byte, size)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	for k := 14; k < size; k++ {
		f[k] = byte(i + k)
	}
	if size >= 18 {
		binary.BigEndian.PutUint32(f[14:], uint32(i))
	}
	return f
}

func receive(t *testing.T, n *vnet.NIC, size int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	buf := make([]byte, size)
	k, err := n.Receive(ctx, buf)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return buf[:k]
}

func TestFrames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vectors int
		mode    virtio.IntrMode
	}{
		{"MSI-X per queue", 3, virtio.IntrDedicated},
		{"shared MSI-X", 1, virtio.IntrShared},
		{"polled", 0, virtio.IntrPoll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, setup{features: vnet.FeatureMAC, vectors: tc.vectors})
			n := r.mustOpen(t, vnet.Config{QueueSize: 64})
			if n.Mode() != tc.mode || !bytes.Equal(n.MAC(), testMAC) || n.MTU() != 1500 || !n.LinkUp() {
				t.Fatalf("mode %v MAC %v MTU %d link %v", n.Mode(), n.MAC(), n.MTU(), n.LinkUp())
			}
			ctx := context.Background()
			// More frames each way than the rings hold.
			const N = 300
			go func() {
				for i := 0; i < N; i++ {
					r.inject(t, nil, frame(i, 60+i%1400), -1)
				}
			}()
			for i := 0; i < N; i++ {
				if got := receive(t, n, 1514); !bytes.Equal(got, frame(i, 60+i%1400)) {
					t.Fatalf("frame %d: got %d bytes %x...", i, len(got), got[:min(len(got), 20)])
				}
			}
			for i := 0; i < N; i++ {
				if err := n.Transmit(ctx, frame(i, 14+i%1500)); err != nil {
					t.Fatal(err)
				}
				// The caller's buffer is free at once.
			}
			for i := 0; i < N; i++ {
				select {
				case got := <-r.tx:
					if !bytes.Equal(got, frame(i, 14+i%1500)) {
						t.Fatalf("transmitted frame %d differs", i)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("frame %d never transmitted", i)
				}
			}
			if err := n.Transmit(ctx, make([]byte, 13)); err == nil {
				t.Error("13-byte frame transmitted")
			}
			if err := n.Transmit(ctx, make([]byte, 1519)); err == nil {
				t.Error("1519-byte frame transmitted")
			}
			st := n.Stats()
			if st.RxFrames != N || st.TxFrames != N || st.RxBad != 0 || st.RxDropped != 0 {
				t.Errorf("stats %+v", st)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if r.mem.Live() != 0 || r.h.IRQs.Live() != 0 {
				t.Errorf("after Close: %d regions, %d vectors live", r.mem.Live(), r.h.IRQs.Live())
			}
			r.check(t)
		})
	}
}

func TestReceiveDropsLongFrames(t *testing.T) {
	r := newRig(t, setup{features: vnet.FeatureMAC, vectors: 3})
	n := r.mustOpen(t, vnet.Config{})
	defer n.Close()
	go func() {
		r.inject(t, nil, frame(1, 1000), -1)
		r.inject(t, nil, frame(2, 100), -1)
	}()
	if got := receive(t, n, 500); !bytes.Equal(got, frame(2, 100)) {
		t.Fatalf("got %d bytes", len(got))
	}
	if st := n.Stats(); st.RxDropped != 1 || st.RxFrames != 1 {
		t.Errorf("stats %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := n.Receive(ctx, make([]byte, 100)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive with nothing to receive: %v", err)
	}
	r.check(t)
}

// TestReceiveInterrupts: receive interrupts are off while Receive finds
// frames and on while it sleeps, with a device that honours the flag
// (as QEMU does), and no frame waits for an interrupt that never comes.
func TestReceiveInterrupts(t *testing.T) {
	r := newRig(t, setup{features: vnet.FeatureMAC, vectors: 3})
	n := r.mustOpen(t, vnet.Config{})
	defer n.Close()
	rq := r.sim.Queue(0)
	asleep := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !rq.Interrupts(); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatal("Receive sleeps with receive interrupts off")
			}
		}
	}
	got := make(chan []byte)
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			buf := make([]byte, 2000)
			k, err := n.Receive(ctx, buf)
			cancel()
			if err != nil {
				close(got)
				return
			}
			got <- buf[:k]
		}
	}()
	next := func(i int) {
		t.Helper()
		if f, ok := <-got; !ok || !bytes.Equal(f, frame(i, 100)) {
			t.Fatalf("frame %d: got %d bytes (ok %v)", i, len(f), ok)
		}
	}
	asleep()
	r.inject(t, nil, frame(1, 100), -1) // wakes Receive by interrupt
	// Receive has returned frame 1 (its goroutine holds it until next(1)),
	// and left receive interrupts off.
	for deadline := time.Now().Add(5 * time.Second); rq.Interrupts(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("receive interrupts still on after a frame was taken")
		}
	}
	r.inject(t, nil, frame(2, 100), -1) // no interrupt: found by looking
	r.inject(t, nil, frame(3, 100), -1)
	next(1)
	next(2)
	next(3)
	asleep()
	r.inject(t, nil, frame(4, 100), -1)
	next(4)
	r.check(t)
}

func TestHostileReceive(t *testing.T) {
	hdr := func(flags, gso byte, nbuf uint16) []byte {
		h := make([]byte, vnet.HeaderLen)
		h[0], h[1] = flags, gso
		binary.LittleEndian.PutUint16(h[10:], nbuf)
		return h
	}
	for _, tc := range []struct {
		name  string
		hdr   []byte
		frame []byte
		n     int64
	}{
		{name: "shorter than a header", frame: frame(0, 60), n: 11},
		{name: "no Ethernet header", frame: frame(0, 60), n: vnet.HeaderLen + 13},
		{name: "length past the buffer", frame: frame(0, 60), n: 1 << 20},
		{name: "frame past the MTU", frame: frame(0, 1519), n: -1},
		{name: "GSO", hdr: hdr(0, 1, 1), frame: frame(0, 60), n: -1},
		{name: "GSO ECN", hdr: hdr(0, 0x80, 1), frame: frame(0, 60), n: -1},
		{name: "NEEDS_CSUM", hdr: hdr(vnet.HdrFNeedsCsum, 0, 1), frame: frame(0, 60), n: -1},
		{name: "unknown flag", hdr: hdr(0x40, 0, 1), frame: frame(0, 60), n: -1},
		{name: "num_buffers 2", hdr: hdr(0, 0, 2), frame: frame(0, 60), n: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, setup{features: vnet.FeatureMAC, vectors: 3})
			n := r.mustOpen(t, vnet.Config{})
			defer n.Close()
			go func() {
				r.inject(t, tc.hdr, tc.frame, tc.n)
				r.inject(t, hdr(vnet.HdrFDataValid, 0, 0), frame(7, 64), -1) // fine: DATA_VALID, legacy num_buffers 0
			}()
			if got := receive(t, n, 2000); !bytes.Equal(got, frame(7, 64)) {
				t.Fatalf("got %d bytes", len(got))
			}
			if st := n.Stats(); st.RxBad != 1 || st.RxFrames != 1 {
				t.Errorf("stats %+v", st)
			}
			// The bad frame's buffer went back to the device.
			deadline := time.Now().Add(5 * time.Second)
			for r.sim.Queue(0).Available() != 256 {
				if time.Now().After(deadline) {
					t.Fatal("receive buffers not all given back")
				}
				time.Sleep(time.Millisecond)
			}
			r.check(t)
		})
	}
}

func TestBrokenDevice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(r *rig)
	}{
		{name: "receive id out of range", break_: func(r *rig) { r.sim.Queue(0).PushRaw(5000, 100) }},
		{name: "transmit index jumps", break_: func(r *rig) { r.sim.Queue(1).SetUsedIdx(77) }},
		{name: "needs reset", break_: func(r *rig) { r.sim.SetNeedsReset() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, setup{features: vnet.FeatureMAC, vectors: 3, noServe: true})
			n := r.mustOpen(t, vnet.Config{})
			errc := make(chan error, 1)
			go func() {
				_, err := n.Receive(context.Background(), make([]byte, 2000))
				errc <- err
			}()
			tc.break_(r)
			select {
			case err := <-errc:
				if !errors.Is(err, netdev.ErrDown) {
					t.Errorf("Receive: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Receive still waiting")
			}
			if err := n.Transmit(context.Background(), frame(0, 60)); !errors.Is(err, netdev.ErrDown) {
				t.Errorf("Transmit: %v", err)
			}
			if r.sim.Status()&virtio.StatusFailed == 0 {
				t.Errorf("status %#x: FAILED not set", r.sim.Status())
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if r.mem.Live() != 0 {
				t.Errorf("%d regions live", r.mem.Live())
			}
		})
	}
}

func TestLinkStatus(t *testing.T) {
	r := newRig(t, setup{features: vnet.FeatureMAC | vnet.FeatureStatus, vectors: 3})
	n := r.mustOpen(t, vnet.Config{})
	defer n.Close()
	if n.LinkUp() {
		t.Fatal("link up with status 0")
	}
	r.sim.SetConfig(6, []byte{1, 0})
	deadline := time.Now().Add(5 * time.Second)
	for !n.LinkUp() {
		if time.Now().After(deadline) {
			t.Fatal("link never came up")
		}
		time.Sleep(100 * time.Microsecond)
	}
	r.check(t)
}

func TestNoMAC(t *testing.T) {
	r := newRig(t, setup{vectors: 3})
	n := r.mustOpen(t, vnet.Config{})
	defer n.Close()
	m := n.MAC()
	if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 || bytes.Equal(m, testMAC) {
		t.Errorf("made-up MAC %v: want unicast, locally administered, not the config's", m)
	}
	if r.sim.DriverFeatures()&vnet.FeatureMAC != 0 {
		t.Error("MAC feature accepted without being offered")
	}
}

func TestMTU(t *testing.T) {
	t.Run("jumbo", func(t *testing.T) {
		r := newRig(t, setup{features: vnet.FeatureMAC | vnet.FeatureMTU, mtu: 9000, vectors: 3})
		n := r.mustOpen(t, vnet.Config{RxMemory: 64 * 9100})
		defer n.Close()
		if n.MTU() != 9000 {
			t.Fatalf("MTU %d", n.MTU())
		}
		if r.sim.Queue(0).Size() != 256 {
			t.Fatalf("rx queue size %d", r.sim.Queue(0).Size())
		}
		if err := n.Transmit(context.Background(), frame(1, 9018)); err != nil {
			t.Fatal(err)
		}
		if err := n.Transmit(context.Background(), frame(1, 9019)); err == nil {
			t.Error("9019-byte frame transmitted")
		}
		go r.inject(t, nil, frame(3, 9014), -1)
		if got := receive(t, n, 9100); !bytes.Equal(got, frame(3, 9014)) {
			t.Fatalf("got %d bytes", len(got))
		}
		r.check(t)
	})
	t.Run("too small", func(t *testing.T) {
		r := newRig(t, setup{features: vnet.FeatureMAC | vnet.FeatureMTU, mtu: 20, vectors: 3})
		if _, err := r.open(t, vnet.Config{}); err == nil {
			t.Fatal("New accepted an MTU of 20")
		}
		if r.mem.Live() != 0 || r.h.IRQs.Live() != 0 {
			t.Errorf("after a failed New: %d regions, %d vectors live", r.mem.Live(), r.h.IRQs.Live())
		}
	})
	t.Run("multicast MAC", func(t *testing.T) {
		r := newRig(t, setup{features: vnet.FeatureMAC, mac: []byte{1, 0, 0x5e, 0, 0, 1}})
		if _, err := r.open(t, vnet.Config{}); err == nil {
			t.Fatal("New accepted a multicast MAC")
		}
	})
}

func TestTransmitWaits(t *testing.T) {
	r := newRig(t, setup{features: vnet.FeatureMAC, vectors: 3, noServe: true})
	n := r.mustOpen(t, vnet.Config{QueueSize: 8})
	for i := 0; i < 8; i++ {
		if err := n.Transmit(context.Background(), frame(i, 60)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := n.Transmit(ctx, frame(8, 60)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Transmit on a full ring: %v", err)
	}
	// The device takes one; a buffer comes back; Transmit goes through.
	c, err := r.sim.Queue(1).WaitPop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.sim.Queue(1).Complete(c, 0)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := n.Transmit(ctx2, frame(9, 60)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- n.Transmit(context.Background(), frame(10, 60)) }()
	time.Sleep(5 * time.Millisecond)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, netdev.ErrDown) {
		t.Errorf("Transmit waiting across Close: %v", err)
	}
	if err := n.Transmit(context.Background(), frame(0, 60)); !errors.Is(err, netdev.ErrDown) {
		t.Errorf("Transmit after Close: %v", err)
	}
	if _, err := n.Receive(context.Background(), nil); !errors.Is(err, netdev.ErrDown) {
		t.Errorf("Receive after Close: %v", err)
	}
	if err := n.Close(); !errors.Is(err, netdev.ErrDown) {
		t.Errorf("second Close: %v", err)
	}
	r.check(t)
}

func TestConcurrent(t *testing.T) {
	r := newRig(t, setup{features: vnet.FeatureMAC, vectors: 3})
	n := r.mustOpen(t, vnet.Config{QueueSize: 32})
	defer n.Close()
	const G, N = 8, 100
	var wg sync.WaitGroup
	got := make(chan []byte, G*N)
	for g := 0; g < G; g++ {
		wg.Add(2)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < N; i++ {
				if err := n.Transmit(context.Background(), frame(g*N+i, 100)); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
		go func() {
			defer wg.Done()
			for i := 0; i < N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				buf := make([]byte, 1514)
				k, err := n.Receive(ctx, buf)
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				got <- buf[:k]
			}
		}()
	}
	go func() {
		for i := 0; i < G*N; i++ {
			r.inject(t, nil, frame(i, 100), -1)
		}
	}()
	wg.Wait()
	close(got)
	seen := map[uint32]bool{}
	for f := range got {
		seen[binary.BigEndian.Uint32(f[14:])] = true
	}
	if len(seen) != G*N {
		t.Errorf("%d distinct frames received, want %d", len(seen), G*N)
	}
	for i := 0; i < G*N; i++ {
		select {
		case <-r.tx:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d frames transmitted", i)
		}
	}
	r.check(t)
}

func TestProbeOutsideImage(t *testing.T) {
	if _, err := vnet.Probe(context.Background()); err == nil {
		t.Fatal("Probe succeeded outside a unikgo image")
	}
}

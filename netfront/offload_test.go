package netfront

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/netdev"
)

// offloadKeys are the frontend's offload keys as the backend saw them.
func offloadKeys(pub map[string]string) map[string]string {
	got := map[string]string{}
	for _, k := range []string{keyNoCsumOffload, keyGSOTCPv4, keyGSOTCPv6, keyIPv6Csum, keySG} {
		if v, ok := pub[k]; ok {
			got[k] = v
		}
	}
	return got
}

// TestOffloadNegotiation checks what the frontend publishes and what
// Offloads says for each set of backend features.
func TestOffloadNegotiation(t *testing.T) {
	on := map[string]string{keyNoCsumOffload: "0", keyGSOTCPv4: "1", keyGSOTCPv6: "1", keyIPv6Csum: "1", keySG: "1"}
	off := map[string]string{keyNoCsumOffload: "1", keySG: "1"}
	plain := netdev.Offloads{MaxTxFrame: 1518, MaxRxFrame: 1518}
	rxOnly := netdev.Offloads{TxCsum: true, Rx: true, MaxTxFrame: 1518, MaxRxFrame: MaxRxGSOFrame}
	for _, tc := range []struct {
		name    string
		offload bool
		keys    map[string]string // backend keys over the simulated netback's
		txBufs  int
		pub     map[string]string
		want    netdev.Offloads
	}{
		{name: "off", pub: off, want: plain},
		{name: "off, backend offers everything", keys: map[string]string{keyGSOTCPv6: "1"}, pub: off, want: plain},
		{name: "tcpv4", offload: true, pub: on,
			want: netdev.Offloads{TxCsum: true, TxTCPv4: true, Rx: true, MaxTxFrame: MaxTxSize, MaxRxFrame: MaxRxGSOFrame}},
		{name: "tcpv4 and v6", offload: true, keys: map[string]string{keyGSOTCPv6: "1"}, pub: on,
			want: netdev.Offloads{TxCsum: true, TxTCPv4: true, TxTCPv6: true, Rx: true, MaxTxFrame: MaxTxSize, MaxRxFrame: MaxRxGSOFrame}},
		{name: "v6 only", offload: true, keys: map[string]string{keyGSOTCPv4: "0", keyGSOTCPv6: "1"}, pub: on,
			want: netdev.Offloads{TxCsum: true, TxTCPv6: true, Rx: true, MaxTxFrame: MaxTxSize, MaxRxFrame: MaxRxGSOFrame}},
		{name: "no gso from the backend", offload: true, keys: map[string]string{keyGSOTCPv4: "<absent>"}, pub: on, want: rxOnly},
		{name: "gso without sg", offload: true, keys: map[string]string{keySG: "0", keyGSOTCPv6: "1"}, pub: on,
			want: netdev.Offloads{TxCsum: true, Rx: true, MaxTxFrame: 1518, MaxRxFrame: MaxRxGSOFrame}},
		{name: "too few tx pages for 64 KiB", offload: true, txBufs: 15, pub: on, want: rxOnly},
		{name: "off, malformed gso keys ignored", keys: map[string]string{keyGSOTCPv4: "yes", keyGSOTCPv6: "-"}, pub: off, want: plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, &backendOpts{keys: tc.keys})
			r.cfg.Offload = tc.offload
			r.cfg.TxBuffers = tc.txBufs
			n := r.open()
			if diff := cmp.Diff(tc.pub, offloadKeys(r.be.keys())); diff != "" {
				t.Errorf("frontend keys (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, n.Offloads()); diff != "" {
				t.Errorf("Offloads (-want +got):\n%s", diff)
			}
		})
	}
}

// offloadRig is a connected NIC with offloads on and a backend offering
// GSO over IPv4 and IPv6.
// TestOffloadMalformedKey: with offload on, a malformed GSO key fails
// the handshake with an error naming it, as other malformed keys do.
func TestOffloadMalformedKey(t *testing.T) {
	r := newRig(t, &backendOpts{keys: map[string]string{keyGSOTCPv6: "yes"}})
	r.cfg.Offload = true
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	if n, err := New(ctx, r.cfg); err == nil || !strings.Contains(err.Error(), keyGSOTCPv6) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("New = %v, want an error naming %s", err, keyGSOTCPv6)
	}
}

func offloadRig(t *testing.T) (*rig, *NIC) {
	r := newRig(t, &backendOpts{keys: map[string]string{keyGSOTCPv6: "1"}})
	r.cfg.Offload = true
	return r, r.open()
}

func (b *simBackend) lastTxMeta() txMeta {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.txMeta[len(b.txMeta)-1]
}

// TestOffloadTransmit sends frames with each Meta and checks the
// requests the backend saw: the flags of the first, the GSO extra info
// slot, the frame's bytes, and that the NULL answers to extra slots are
// taken as such.
func TestOffloadTransmit(t *testing.T) {
	r, n := offloadRig(t)
	gso := func(typ uint8, size uint16) []Extra {
		return []Extra{{Type: ExtraGSO, GSOType: typ, GSOSize: size}}
	}
	for _, tc := range []struct {
		name  string
		size  int
		meta  netdev.Meta
		want  txMeta
		slots int
	}{
		{name: "plain", size: 1000, want: txMeta{}, slots: 1},
		{name: "partial checksum", size: 1514, meta: netdev.Meta{NeedsCsum: true},
			want: txMeta{Flags: TxCsumBlank | TxDataValidated}, slots: 1},
		{name: "tcpv4 60000", size: 60000, meta: netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 1448, NeedsCsum: true},
			want: txMeta{Flags: TxCsumBlank | TxDataValidated | TxExtraInfo | TxMoreData, Extras: gso(GSOTypeTCPv4, 1448)}, slots: 15},
		{name: "tcpv6 65535", size: MaxTxSize, meta: netdev.Meta{GSOType: netdev.GSOTCPv6, GSOSize: 1428, NeedsCsum: true},
			want: txMeta{Flags: TxCsumBlank | TxDataValidated | TxExtraInfo | TxMoreData, Extras: gso(GSOTypeTCPv6, 1428)}, slots: 16},
		{name: "gso frame within the MTU", size: 200, meta: netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 1448, NeedsCsum: true},
			want: txMeta{Flags: TxCsumBlank | TxDataValidated | TxExtraInfo, Extras: gso(GSOTypeTCPv4, 1448)}, slots: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := frame(tc.size, byte(tc.size))
			if err := n.TransmitMeta(r.ctx, f, tc.meta); err != nil {
				t.Fatalf("TransmitMeta: %v", err)
			}
			if got := r.sent(); !bytes.Equal(got, f) {
				t.Fatalf("the backend got %d bytes, want the %d sent", len(got), len(f))
			}
			if diff := cmp.Diff(tc.want, r.be.lastTxMeta()); diff != "" {
				t.Errorf("first request (-want +got):\n%s", diff)
			}
			r.be.mu.Lock()
			slots := r.be.txSlots[len(r.be.txSlots)-1]
			r.be.mu.Unlock()
			if slots != tc.slots {
				t.Errorf("%d data slots, want %d", slots, tc.slots)
			}
		})
	}
	waitFor(t, "every transmit page back", func() bool { return len(n.txFreeCopy()) == DefaultTxBuffers })
	n.mu.Lock()
	due := n.conn.nullDue
	n.mu.Unlock()
	s := n.Stats()
	if s.TxBad != 0 || s.TxErrors != 0 || s.TxGSO != 3 || s.TxFrames != 5 || due != 0 {
		t.Errorf("stats %+v, %d NULL responses still due", s, due)
	}
}

// TestOffloadTransmitRefused: frames whose Meta is inconsistent or asks
// for an offload not negotiated are refused before anything reaches the
// ring (a zero GSO size would make Linux netback disable the vif).
func TestOffloadTransmitRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offload bool
		size    int
		meta    netdev.Meta
		want    error
	}{
		{name: "gso size 0", offload: true, size: 3000, meta: netdev.Meta{GSOType: netdev.GSOTCPv4, NeedsCsum: true}, want: ErrOffload},
		{name: "gso without partial checksum", offload: true, size: 3000, meta: netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 1448}, want: ErrOffload},
		{name: "size without type", offload: true, size: 100, meta: netdev.Meta{GSOSize: 1448}, want: ErrOffload},
		{name: "unknown type", offload: true, size: 3000, meta: netdev.Meta{GSOType: 7, GSOSize: 1448, NeedsCsum: true}, want: ErrOffload},
		{name: "validated on transmit", offload: true, size: 100, meta: netdev.Meta{CsumValidated: true}, want: ErrOffload},
		{name: "tcpv6 not offered", offload: true, size: 3000, meta: netdev.Meta{GSOType: netdev.GSOTCPv6, GSOSize: 1448, NeedsCsum: true}, want: ErrOffload},
		{name: "gso larger than 64 KiB", offload: true, size: MaxTxSize + 1, meta: netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 1448, NeedsCsum: true}, want: ErrFrameSize},
		{name: "plain larger than the MTU", offload: true, size: 1519, want: ErrFrameSize},
		{name: "checksum offload off", size: 100, meta: netdev.Meta{NeedsCsum: true}, want: ErrOffload},
		{name: "gso off", size: 3000, meta: netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 1448, NeedsCsum: true}, want: ErrOffload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.cfg.Offload = tc.offload
			n := r.open()
			if err := n.TransmitMeta(r.ctx, frame(tc.size, 1), tc.meta); !errors.Is(err, tc.want) {
				t.Fatalf("TransmitMeta = %v, want %v", err, tc.want)
			}
			if s := n.Stats(); s.TxFrames != 0 {
				t.Errorf("stats %+v", s)
			}
			select {
			case f := <-r.be.sent:
				t.Errorf("the backend got a %d-byte frame", len(f))
			case <-time.After(20 * time.Millisecond):
			}
		})
	}
}

// TestOffloadReceive delivers packets as netback sends them, with
// checksum flags and GSO extra info slots, and hostile variants: each bad
// packet is dropped and counted, and the next one still arrives.
func TestOffloadReceive(t *testing.T) {
	gso := func(typ uint8, size uint16) Extra { return Extra{Type: ExtraGSO, GSOType: typ, GSOSize: size} }
	type stats struct{ RxFrames, RxBad, RxOversize, RxGSO uint64 }
	for _, tc := range []struct {
		name    string
		offload bool
		size    int
		flags   uint16
		extras  []Extra
		want    netdev.Meta
		stats   stats // after the packet and a good one behind it
	}{
		{name: "plain", offload: true, size: 1514, stats: stats{RxFrames: 2}},
		{name: "validated", offload: true, size: 1514, flags: RxDataValidated,
			want: netdev.Meta{CsumValidated: true}, stats: stats{RxFrames: 2}},
		{name: "partial", offload: true, size: 600, flags: RxCsumBlank | RxDataValidated,
			want: netdev.Meta{NeedsCsum: true, CsumValidated: true}, stats: stats{RxFrames: 2}},
		{name: "tcpv4 gso", offload: true, size: 60000, flags: RxCsumBlank | RxDataValidated, extras: []Extra{gso(GSOTypeTCPv4, 1448)},
			want: netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 1448, NeedsCsum: true, CsumValidated: true}, stats: stats{RxFrames: 2, RxGSO: 1}},
		{name: "tcpv6 gso, largest", offload: true, size: MaxRxGSOFrame, flags: RxDataValidated, extras: []Extra{gso(GSOTypeTCPv6, 8940)},
			want: netdev.Meta{GSOType: netdev.GSOTCPv6, GSOSize: 8940, CsumValidated: true}, stats: stats{RxFrames: 2, RxGSO: 1}},
		{name: "gso in one slot", offload: true, size: 300, flags: RxCsumBlank, extras: []Extra{gso(GSOTypeTCPv4, 100)},
			want: netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 100, NeedsCsum: true}, stats: stats{RxFrames: 2, RxGSO: 1}},
		{name: "gso larger than an IP packet", offload: true, size: MaxRxGSOFrame + 1, extras: []Extra{gso(GSOTypeTCPv4, 1448)},
			stats: stats{RxFrames: 1, RxOversize: 1}},
		{name: "large without gso", offload: true, size: 3000, stats: stats{RxFrames: 1, RxOversize: 1}},
		{name: "gso size 0", offload: true, size: 3000, extras: []Extra{gso(GSOTypeTCPv4, 0)}, stats: stats{RxFrames: 1, RxBad: 1}},
		{name: "gso type none", offload: true, size: 3000, extras: []Extra{gso(GSOTypeNone, 1448)}, stats: stats{RxFrames: 1, RxBad: 1}},
		{name: "gso type 3", offload: true, size: 3000, extras: []Extra{gso(3, 1448)}, stats: stats{RxFrames: 1, RxBad: 1}},
		{name: "two gso extras", offload: true, size: 3000, extras: []Extra{gso(GSOTypeTCPv4, 1448), gso(GSOTypeTCPv4, 1448)}, stats: stats{RxFrames: 1, RxBad: 1}},
		{name: "hash extra", offload: true, size: 100, extras: []Extra{{Type: ExtraHash}}, stats: stats{RxFrames: 1, RxBad: 1}},
		{name: "gso prefix", offload: true, size: 100, flags: RxGSOPrefix, stats: stats{RxFrames: 1, RxBad: 1}},
		{name: "partial, offload off", size: 100, flags: RxCsumBlank, stats: stats{RxFrames: 1, RxBad: 1}},
		{name: "gso, offload off", size: 3000, extras: []Extra{gso(GSOTypeTCPv4, 1448)}, stats: stats{RxFrames: 1, RxBad: 1}},
		{name: "validated, offload off", size: 100, flags: RxDataValidated, stats: stats{RxFrames: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			r.cfg.Offload = tc.offload
			n := r.open()
			f := frame(tc.size, 3)
			r.be.injectMeta(f, tc.flags, tc.extras...)
			r.be.inject(frame(100, 4))
			ctx := r.ctx
			buf := make([]byte, MaxRxGSOFrame+100)
			k, meta, err := n.ReceiveMeta(ctx, buf)
			if err != nil {
				t.Fatalf("ReceiveMeta: %v", err)
			}
			if tc.stats.RxFrames == 2 {
				if !bytes.Equal(buf[:k], f) {
					t.Fatalf("received %d bytes, want the %d injected", k, len(f))
				}
				if diff := cmp.Diff(tc.want, meta); diff != "" {
					t.Errorf("Meta (-want +got):\n%s", diff)
				}
				if k, meta, err = n.ReceiveMeta(ctx, buf); err != nil {
					t.Fatalf("ReceiveMeta: %v", err)
				}
			}
			if !bytes.Equal(buf[:k], frame(100, 4)) || meta != (netdev.Meta{}) {
				t.Fatalf("received %d bytes with %+v, want the 100-byte frame behind", k, meta)
			}
			s := n.Stats()
			if diff := cmp.Diff(tc.stats, stats{s.RxFrames, s.RxBad, s.RxOversize, s.RxGSO}); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOffloadReconnectFewer: the Offloads of the first connection stay;
// when the backend comes back without GSO, GSO frames are refused and
// counted while other frames flow.
func TestOffloadReconnectFewer(t *testing.T) {
	r, n := offloadRig(t)
	gsoMeta := netdev.Meta{GSOType: netdev.GSOTCPv4, GSOSize: 1448, NeedsCsum: true}
	if err := n.TransmitMeta(r.ctx, frame(20000, 1), gsoMeta); err != nil {
		t.Fatal(err)
	}
	r.sent()
	before := n.Offloads()
	r.be.setKey(keyGSOTCPv4, "0")
	r.closeAndHold(n)
	r.be.opts.holdClosed.Store(false)
	waitFor(t, "the link to come back", n.LinkUp)
	if err := n.TransmitMeta(r.ctx, frame(20000, 2), gsoMeta); !errors.Is(err, ErrOffload) {
		t.Errorf("GSO TransmitMeta after the backend dropped GSO = %v, want ErrOffload", err)
	}
	if err := n.TransmitMeta(r.ctx, frame(1000, 3), netdev.Meta{NeedsCsum: true}); err != nil {
		t.Fatal(err)
	}
	if got := r.sent(); !bytes.Equal(got, frame(1000, 3)) {
		t.Errorf("sent %d bytes", len(got))
	}
	if diff := cmp.Diff(before, n.Offloads()); diff != "" {
		t.Errorf("Offloads changed (-before +after):\n%s", diff)
	}
	if s := n.Stats(); s.TxNoOffload != 1 || s.TxGSO != 1 || s.Reconnects != 1 {
		t.Errorf("stats %+v", s)
	}
}

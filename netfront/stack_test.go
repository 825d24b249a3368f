package netfront

import (
	"net/netip"
	"testing"
	"time"

	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/netstack/nictest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// bridge delivers every frame from's driver transmits to to's driver, as
// Linux netback does between two vifs of one host: a partial checksum
// arrives as NETRXF_csum_blank|NETRXF_data_validated and a GSO frame
// whole, with the GSO extra info it was sent with.
func bridge(t *testing.T, from, to *simBackend, done <-chan struct{}) {
	go func() {
		for i := 0; ; i++ {
			var f []byte
			select {
			case f = <-from.sent:
			case <-done:
				return
			}
			from.mu.Lock()
			m := from.txMeta[i]
			from.mu.Unlock()
			var flags uint16
			if m.Flags&TxCsumBlank != 0 {
				flags = RxCsumBlank | RxDataValidated
			}
			to.injectMeta(f, flags, m.Extras...)
		}
	}()
}

// TestStackOverNetfront runs gVisor's stack (package netstack) on two
// drivers whose simulated backends are bridged: a 4 MiB TCP echo over
// IPv4 and IPv6 and a UDP datagram, with offloads off and on. With them
// on, TCP goes as GSO frames larger than the MTU both ways.
func TestStackOverNetfront(t *testing.T) {
	addrA, addrB := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	addrA6, addrB6 := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	msg := make([]byte, 4<<20)
	for i := range msg {
		msg[i] = byte(i*11 + i>>10)
	}
	for _, offload := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "offload"}[offload], func(t *testing.T) {
			keys := map[string]string{keyGSOTCPv6: "1"}
			ra := newRig(t, &backendOpts{keys: keys})
			rb := newRig(t, &backendOpts{keys: map[string]string{keyGSOTCPv6: "1", "mac": "00:16:3e:5a:01:03"}})
			ra.cfg.Offload, rb.cfg.Offload = offload, offload
			na, nb := ra.open(), rb.open()
			done := make(chan struct{})
			t.Cleanup(func() { close(done) })
			bridge(t, ra.be, rb.be, done)
			bridge(t, rb.be, ra.be, done)
			a, err := netstack.New(netstack.Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrA, 24), netip.PrefixFrom(addrA6, 64)}, NoSLAAC: true, NoDAD: true}, na)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Close)
			b, err := netstack.New(netstack.Config{Addrs: []netip.Prefix{netip.PrefixFrom(addrB, 24), netip.PrefixFrom(addrB6, 64)}, NoSLAAC: true, NoDAD: true}, nb)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			for _, peer := range []netip.Addr{addrB, addrB6} {
				nictest.TCPEcho(t, a.Gvisor(), b.Gvisor(), peer, msg, 60*time.Second)
			}
			local := tcpip.FullAddress{Addr: tcpip.AddrFromSlice(addrB.AsSlice()), Port: 9}
			us, err := gonet.DialUDP(b.Gvisor(), &local, nil, header.IPv4ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			defer us.Close()
			uc, err := gonet.DialUDP(a.Gvisor(), nil, &local, header.IPv4ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			if _, err := uc.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			us.SetDeadline(time.Now().Add(10 * time.Second))
			if n, _, err := us.ReadFrom(buf); err != nil || string(buf[:n]) != "ping" {
				t.Fatalf("UDP got %q, %v", buf[:n], err)
			}
			for _, st := range []*netstack.Stack{a, b} {
				if d := st.Gvisor().Stats().TCP.ChecksumErrors.Value(); d != 0 {
					t.Errorf("gVisor dropped %d TCP segments with bad checksums", d)
				}
			}
			sa, sb := na.Stats(), nb.Stats()
			t.Logf("A: %d frames sent (%d GSO), %d received (%d GSO); B: %d sent (%d GSO), %d received (%d GSO)",
				sa.TxFrames, sa.TxGSO, sa.RxFrames, sa.RxGSO, sb.TxFrames, sb.TxGSO, sb.RxFrames, sb.RxGSO)
			for _, s := range []Stats{sa, sb} {
				if s.RxBad+s.RxErrors+s.RxOversize+s.RxDropped+s.TxBad+s.TxErrors+s.TxNoOffload != 0 {
					t.Errorf("stats %+v", s)
				}
				if offload != (s.TxGSO > 0 && s.RxGSO > 0) {
					t.Errorf("offload %v, %d GSO frames sent, %d received", offload, s.TxGSO, s.RxGSO)
				}
			}
		})
	}
}

package nat

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/unikgo/unikgo/services/packet"
	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

var (
	pub4    = netip.MustParseAddr("192.168.1.50")
	pub6    = netip.MustParseAddr("2001:db8:aaaa::50")
	client4 = netip.MustParseAddr("10.137.0.5")
	other4  = netip.MustParseAddr("10.137.0.6")
	remote4 = netip.MustParseAddr("93.184.216.34")
	router4 = netip.MustParseAddr("192.0.2.1")
	client6 = netip.MustParseAddr("fd09:24ef:4179::a89:5")
	remote6 = netip.MustParseAddr("2001:db8:1::1")
	router6 = netip.MustParseAddr("2001:db8:ffff::1")

	t0 = time.Unix(1_700_000_000, 0)
)

// testConfig is a small deterministic configuration.
func testConfig() Config {
	return Config{
		MaxFlows:   64,
		PublicIPv4: pub4,
		PublicIPv6: pub6,
		Rand:       rand.NewPCG(1, 2),
	}
}

func mustNew(t testing.TB, cfg Config) *Table {
	t.Helper()
	tb, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb
}

// tupleOf parses frame and returns its tuple.
func tupleOf(t testing.TB, frame []byte) packet.Tuple {
	t.Helper()
	var p packet.Packet
	if err := packet.Parse(frame, &p); err != nil {
		t.Fatalf("translated frame does not parse: %v", err)
	}
	return p.Tuple
}

func addr(a netip.Addr) packet.Addr { return packet.AddrFromNetIP(a) }

// udpOut returns a UDP frame from client:cport to remote:rport.
func udpOut(client, remote netip.Addr, cport, rport uint16) []byte {
	return pt.Frame(client, remote, packet.ProtoUDP, pt.UDP(client, remote, cport, rport, []byte("payload")))
}

// udpIn returns a UDP frame from remote:rport to the public address:port.
func udpIn(remote, pub netip.Addr, rport, port uint16) []byte {
	return pt.Frame(remote, pub, packet.ProtoUDP, pt.UDP(remote, pub, rport, port, []byte("reply")))
}

func tcpFrame(src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
	return pt.Frame(src, dst, packet.ProtoTCP, pt.TCP(src, dst, sport, dport, flags, []byte("seg")))
}

// outbound translates frame and returns the outside port it was given.
func outbound(t testing.TB, tb *Table, frame []byte, now time.Time) uint16 {
	t.Helper()
	v, err := tb.Outbound(frame, now)
	if v != Forward || err != nil {
		t.Fatalf("Outbound = %v, %v; want forward", v, err)
	}
	return tupleOf(t, frame).SrcPort
}

// checkInvariants verifies the table's internal structure: every flow is
// on exactly one list, reachable through both hash indexes, and the counts
// agree with the bound.
func checkInvariants(t testing.TB, tb *Table) {
	t.Helper()
	if tb.n > tb.cfg.MaxFlows {
		t.Fatalf("table holds %d flows, bound is %d", tb.n, tb.cfg.MaxFlows)
	}
	seen := 0
	for l := listUnassured; l < numLists; l++ {
		count, prev := 0, nilIdx
		for i := tb.lists[l].head; i != nilIdx; i = tb.flow(i).next {
			f := tb.flow(i)
			if f.list != l || f.prev != prev {
				t.Fatalf("flow %d: list %d prev %d, expected list %d prev %d", i, f.list, f.prev, l, prev)
			}
			if got := tb.lookupInside(&f.key); got != i {
				t.Fatalf("flow %d not found by inside key (got %d)", i, got)
			}
			if got := tb.lookupOutside(f.key.Proto, &f.key.Dst, f.key.DstPort, f.pubPort); got != i {
				t.Fatalf("flow %d not found by outside key (got %d)", i, got)
			}
			prev = i
			count++
			if count > tb.cfg.MaxFlows {
				t.Fatalf("list %d has a cycle", l)
			}
		}
		if count != tb.lists[l].n || prev != tb.lists[l].tail {
			t.Fatalf("list %d: walked %d flows ending at %d, header says %d ending at %d", l, count, prev, tb.lists[l].n, tb.lists[l].tail)
		}
		seen += count
	}
	if seen != tb.n {
		t.Fatalf("lists hold %d flows, table counts %d", seen, tb.n)
	}
	free := 0
	for i := tb.free; i != nilIdx; i = tb.flow(i).next {
		free++
		if free > tb.cfg.MaxFlows {
			t.Fatalf("free list has a cycle")
		}
	}
	if tb.allocated > tb.cfg.MaxFlows || free+tb.n != tb.allocated {
		t.Fatalf("free %d + used %d != allocated slots %d (bound %d)", free, tb.n, tb.allocated, tb.cfg.MaxFlows)
	}
}

// clientPorts lists the inside source ports of the flows on list l, least
// recently used first.
func clientPorts(tb *Table, l uint8) []uint16 {
	var ports []uint16
	for i := tb.lists[l].head; i != nilIdx; i = tb.flow(i).next {
		ports = append(ports, tb.flow(i).key.SrcPort)
	}
	return ports
}

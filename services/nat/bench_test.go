package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/unikgo/unikgo/services/packet"
	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

const flowsPerClient = 20

// establishedTable fills a table with clients x 20 established TCP flows
// and returns it with template frames of both directions for every flow.
func establishedTable(b *testing.B, clients int) (tb *Table, out, in [][]byte) {
	cfg := testConfig()
	cfg.MaxFlows = clients * flowsPerClient
	tb = mustNew(b, cfg)
	payload := make([]byte, 64)
	for c := range clients {
		client := netip.AddrFrom4([4]byte{10, 137, byte(c >> 8), byte(c)})
		for j := range flowsPerClient {
			remote := netip.AddrFrom4([4]byte{93, 184, byte(j), 34})
			cport := uint16(40000 + j)
			port := outbound(b, tb, tcpFrame(client, remote, cport, 443, packet.TCPFlagSYN), t0)
			if v, err := tb.Inbound(tcpFrame(remote, pub4, 443, port, packet.TCPFlagSYN|packet.TCPFlagACK), t0); v != Forward {
				b.Fatalf("SYN-ACK: %v, %v", v, err)
			}
			out = append(out, pt.Frame(client, remote, packet.ProtoTCP, pt.TCP(client, remote, cport, 443, packet.TCPFlagACK, payload)))
			in = append(in, pt.Frame(remote, pub4, packet.ProtoTCP, pt.TCP(remote, pub4, 443, port, packet.TCPFlagACK, payload)))
		}
	}
	return tb, out, in
}

// BenchmarkEstablished measures lookup plus in-place translation of one
// packet of an established flow, cycling over every flow in the table. Each
// iteration also copies the 128-byte template frame into the work buffer.
func BenchmarkEstablished(b *testing.B) {
	for _, clients := range []int{1, 50, 500} {
		tb, out, in := establishedTable(b, clients)
		for _, dir := range []struct {
			name      string
			frames    [][]byte
			translate func([]byte, time.Time) (Verdict, error)
		}{{"outbound", out, tb.Outbound}, {"inbound", in, tb.Inbound}} {
			b.Run(fmt.Sprintf("clients=%d/flows=%d/%s", clients, clients*flowsPerClient, dir.name), func(b *testing.B) {
				buf := make([]byte, len(dir.frames[0]))
				now := t0.Add(time.Second)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					copy(buf, dir.frames[i])
					if v, err := dir.translate(buf, now); v != Forward {
						b.Fatalf("%v, %v", v, err)
					}
					if i++; i == len(dir.frames) {
						i = 0
					}
				}
			})
		}
	}
}

// floodFrame writes into frame (an untagged IPv4 UDP frame) the i-th of a
// stream of distinct flows: 1000 clients x 200 source ports per round, to
// 64 remotes, so the outside port range is never the limit.
func floodFrame(frame []byte, i int) {
	ip := packet.IPv4(frame[14:])
	c := (i / 200) % 60000
	copy(frame[14+12:], []byte{10, 137, byte(c >> 8), byte(c)})
	copy(frame[14+16:], []byte{198, 18, byte(i % 64), byte(i / 64 / 65536)})
	binary.BigEndian.PutUint16(frame[14+20:], uint16(10000+(i%200)+200*((i/200)/60000)))
	binary.BigEndian.PutUint16(frame[14+20+6:], 0) // no UDP checksum
	ip.SetChecksum(0)
	ip.SetChecksum(ip.ComputeChecksum())
}

func heapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryBound offers 200 000 distinct flows to a 100 000-flow table: the
// table must stay at its bound and its memory must not grow past what the
// first 100 000 flows needed.
func TestMemoryBound(t *testing.T) {
	const maxFlows, offered = 100_000, 200_000
	frame := udpOut(client4, remote4, 1, 53)
	buf := make([]byte, len(frame))

	h0 := heapBytes()
	cfg := testConfig()
	cfg.MaxFlows = maxFlows
	tb := mustNew(t, cfg)
	now := t0
	offer := func(from, to int) {
		for i := from; i < to; i++ {
			copy(buf, frame)
			floodFrame(buf, i)
			if v, err := tb.Outbound(buf, now); v != Forward {
				t.Fatalf("flow %d: %v, %v", i, v, err)
			}
		}
	}
	offer(0, maxFlows)
	h1 := heapBytes()
	if tb.Len() != maxFlows {
		t.Fatalf("Len = %d after %d distinct flows, want %d", tb.Len(), maxFlows, maxFlows)
	}
	offer(maxFlows, offered)
	h2 := heapBytes()
	if tb.Len() != maxFlows {
		t.Errorf("Len = %d after %d offered flows, want the bound %d", tb.Len(), offered, maxFlows)
	}
	if s := tb.Stats(); s.Evicted != offered-maxFlows || s.Created != offered {
		t.Errorf("created %d, evicted %d; want %d, %d", s.Created, s.Evicted, offered, offered-maxFlows)
	}
	full := int64(h1) - int64(h0)
	growth := int64(h2) - int64(h1)
	t.Logf("100k-flow table: %d bytes (%.1f bytes/flow); growth over the next %d flows: %d bytes",
		full, float64(full)/maxFlows, offered-maxFlows, growth)
	if growth > 64<<10 {
		t.Errorf("heap grew %d bytes while the table was full; the bound does not hold", growth)
	}
	if limit := int64(maxFlows * 96); full > limit {
		t.Errorf("table uses %d bytes for %d flows, more than %d", full, maxFlows, limit)
	}
	checkInvariants(t, tb)
	runtime.KeepAlive(tb)
}

// BenchmarkFlood measures opening a new flow in a full 100 000-flow table,
// which evicts one (the cost a flood of new connections imposes), and
// reports the table's heap footprint.
func BenchmarkFlood(b *testing.B) {
	const maxFlows = 100_000
	frame := udpOut(client4, remote4, 1, 53)
	buf := make([]byte, len(frame))
	h0 := heapBytes()
	cfg := testConfig()
	cfg.MaxFlows = maxFlows
	tb := mustNew(b, cfg)
	i := 0
	for ; i < maxFlows; i++ {
		copy(buf, frame)
		floodFrame(buf, i)
		tb.Outbound(buf, t0)
	}
	table := heapBytes() - h0
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, frame)
		floodFrame(buf, i)
		if v, err := tb.Outbound(buf, t0); v != Forward {
			b.Fatalf("%v, %v", v, err)
		}
		i++
	}
	b.StopTimer()
	if tb.Len() > maxFlows {
		b.Fatalf("Len %d exceeds the bound %d", tb.Len(), maxFlows)
	}
	b.ReportMetric(float64(table), "table-bytes")
	b.ReportMetric(float64(table)/maxFlows, "bytes/flow")
	b.ReportMetric(float64(heapBytes()-h0), "bytes-after-flood")
}

package nat_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/unikgo/unikgo/services/nat"
	"github.com/unikgo/unikgo/services/packet"
	pt "github.com/unikgo/unikgo/services/packet/packettest"
)

// A FirewallVM masquerades client 10.137.0.5 behind its upstream address
// 192.168.1.50 and lets its rule engine decide which new flows may open.
func Example() {
	client := netip.MustParseAddr("10.137.0.5")
	public := netip.MustParseAddr("192.168.1.50")
	dns := netip.MustParseAddr("9.9.9.9")
	tb, err := nat.New(nat.Config{
		MaxFlows:   4096,
		PublicIPv4: public,
		Rand:       rand.NewPCG(1, 1), // deterministic for the example
		Admit: func(p *packet.Packet) bool {
			return p.Tuple.Proto == packet.ProtoUDP && p.Tuple.DstPort == 53 // "proto=udp dstports=53-53"
		},
	})
	if err != nil {
		panic(err)
	}
	now := time.Unix(0, 0)
	var p packet.Packet
	show := func(what string, frame []byte, v nat.Verdict, err error) {
		_ = packet.Parse(frame, &p)
		fmt.Printf("%-8s %-7v %v:%d -> %v:%d err=%v\n", what, v, p.Tuple.Src, p.Tuple.SrcPort, p.Tuple.Dst, p.Tuple.DstPort, err)
	}

	query := pt.Frame(client, dns, packet.ProtoUDP, pt.UDP(client, dns, 5353, 53, []byte("query")))
	v, err := tb.Outbound(query, now)
	show("query", query, v, err)

	port := p.Tuple.SrcPort
	answer := pt.Frame(dns, public, packet.ProtoUDP, pt.UDP(dns, public, 53, port, []byte("answer")))
	v, err = tb.Inbound(answer, now.Add(time.Millisecond))
	show("answer", answer, v, err)

	ssh := pt.Frame(client, dns, packet.ProtoTCP, pt.TCP(client, dns, 40000, 22, packet.TCPFlagSYN, nil))
	v, err = tb.Outbound(ssh, now)
	show("ssh", ssh, v, err)

	fmt.Println("flows:", tb.Len(), "flushed:", tb.FlushClient(client))
	// Output:
	// query    forward 192.168.1.50:28101 -> 9.9.9.9:53 err=<nil>
	// answer   forward 9.9.9.9:53 -> 10.137.0.5:5353 err=<nil>
	// ssh      deny    10.137.0.5:40000 -> 9.9.9.9:22 err=<nil>
	// flows: 1 flushed: 1
}

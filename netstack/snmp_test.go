package netstack

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/netstack/nictest"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// parseSNMP reads Linux's /proc/net/snmp layout as nstat does: pairs of
// "Proto: names..." and "Proto: values..." lines.
func parseSNMP(t *testing.T, b []byte) map[string]map[string]int64 {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines)%2 != 0 {
		t.Fatalf("odd number of lines:\n%s", b)
	}
	out := map[string]map[string]int64{}
	for i := 0; i < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || names[0] != values[0] || !strings.HasSuffix(names[0], ":") {
			t.Fatalf("lines %d and %d do not pair:\n%s\n%s", i+1, i+2, lines[i], lines[i+1])
		}
		m := map[string]int64{}
		for j := 1; j < len(names); j++ {
			v, err := strconv.ParseInt(values[j], 10, 64)
			if err != nil {
				t.Fatalf("%s %s: %v", names[0], names[j], err)
			}
			m[names[j]] = v
		}
		out[strings.TrimSuffix(names[0], ":")] = m
	}
	return out
}

// settled returns s's /proc/net/snmp once two reads 50 ms apart agree.
func settled(t *testing.T, s *Stack) []byte {
	t.Helper()
	prev := s.SNMP()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		cur := s.SNMP()
		if bytes.Equal(cur, prev) {
			return cur
		}
		prev = cur
	}
	t.Fatalf("%s's counters still change after 5 s:\n%s", s.Hostname(), prev)
	return nil
}

// TestSNMP: after a TCP exchange and a UDP datagram, /proc/net/snmp and
// /proc/net/netstat as the stacks serve them pair names with values and
// count what happened.
func TestSNMP(t *testing.T) {
	a, b := newPair(t)
	nictest.TCPEcho(t, a.Gvisor(), b.Gvisor(), addrB, bytes.Repeat([]byte("x"), 100000), 10*time.Second)
	local := fullAddr(addrB, 9)
	uc, err := gonet.DialUDP(a.Gvisor(), nil, &local, proto(addrB))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write([]byte("nobody listens")); err != nil {
		t.Fatal(err)
	}

	// The echo's closing segments are still on their way when TCPEcho
	// returns; counters read while they move would not agree.
	sa, sb := parseSNMP(t, settled(t, a)), parseSNMP(t, settled(t, b))
	var got []string
	for _, p := range []string{"Ip", "Icmp", "Tcp", "Udp"} {
		if _, ok := sa[p]; ok {
			got = append(got, p)
		}
	}
	if diff := cmp.Diff([]string{"Ip", "Icmp", "Tcp", "Udp"}, got); diff != "" {
		t.Errorf("protocols (-want +got):\n%s", diff)
	}
	st := a.Gvisor().Stats().TCP
	want := map[string]int64{"ActiveOpens": 1, "PassiveOpens": 0, "MaxConn": -1,
		"InSegs": int64(st.ValidSegmentsReceived.Value()), "OutSegs": int64(st.SegmentsSent.Value())}
	for k, v := range want {
		if sa["Tcp"][k] != v {
			t.Errorf("A's Tcp %s = %d, want %d", k, sa["Tcp"][k], v)
		}
	}
	if sb["Tcp"]["PassiveOpens"] != 1 {
		t.Errorf("B's Tcp PassiveOpens = %d, want 1", sb["Tcp"]["PassiveOpens"])
	}
	// The SYN-ACK, 100 kB of echo (fewer segments than on the wire:
	// GRO joins them) and the FIN.
	if n := sa["Tcp"]["InSegs"]; n < 3 {
		t.Errorf("A's Tcp InSegs = %d, want at least 3", n)
	}
	if sa["Udp"]["OutDatagrams"] != 1 || sa["Ip"]["OutRequests"] < sa["Tcp"]["OutSegs"]+1 {
		t.Errorf("A sent 1 datagram and %d segments: Udp %v, Ip OutRequests %d", sa["Tcp"]["OutSegs"], sa["Udp"], sa["Ip"]["OutRequests"])
	}
	// B answers the datagram with an ICMP port unreachable.
	deadline := time.Now().Add(5 * time.Second)
	for parseSNMP(t, b.SNMP())["Udp"]["NoPorts"] != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sb := parseSNMP(t, b.SNMP()); sb["Udp"]["NoPorts"] != 1 || sb["Ip"]["Forwarding"] != 2 {
		t.Errorf("B: Udp NoPorts %d (want 1), Ip Forwarding %d (want 2, not a router)", sb["Udp"]["NoPorts"], sb["Ip"]["Forwarding"])
	}
	ext := parseSNMP(t, a.Netstat())
	if _, ok := ext["TcpExt"]["TCPTimeouts"]; !ok || len(ext) != 1 {
		t.Errorf("netstat: %v, want one TcpExt row with TCPTimeouts", ext)
	}
}

package netstack

import (
	"bytes"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// Linux's /proc/net/snmp and /proc/net/netstat: per protocol, a line of
// field names and a line of values, both starting "Proto:". Readers such
// as netstat -s and nstat match fields by name, so fields gVisor does not
// count are given as 0 (Linux's own -1 only for MaxConn) and TcpExt holds
// only the fields gVisor has a counter for.

// snmpRow is one protocol's pair of lines.
type snmpRow struct {
	proto  string
	fields []string
	values []int64
}

func (r snmpRow) write(b *bytes.Buffer) {
	b.WriteString(r.proto + ":")
	for _, f := range r.fields {
		b.WriteString(" " + f)
	}
	b.WriteString("\n" + r.proto + ":")
	for _, v := range r.values {
		fmt.Fprintf(b, " %d", v)
	}
	b.WriteString("\n")
}

// row builds a row from name, value pairs.
func row(proto string, kv ...any) snmpRow {
	r := snmpRow{proto: proto}
	for i := 0; i+1 < len(kv); i += 2 {
		r.fields = append(r.fields, kv[i].(string))
		switch v := kv[i+1].(type) {
		case *tcpip.StatCounter:
			r.values = append(r.values, int64(v.Value()))
		case uint64:
			r.values = append(r.values, int64(v))
		case int:
			r.values = append(r.values, int64(v))
		default:
			panic(fmt.Sprintf("netstack: snmp field %s: value of type %T", kv[i], v))
		}
	}
	return r
}

// SNMP returns the stack's counters as Linux's /proc/net/snmp shows them
// (Ip, Icmp, Tcp and Udp, in Linux's field order).
func (st *Stack) SNMP() []byte {
	s := st.s.Stats()
	ip, tcp, udp, icmp := s.IP, s.TCP, s.UDP, s.ICMP.V4
	fwd := 2 // Linux: 1 forwarding, 2 not
	for _, id := range st.NICs() {
		if on, err := st.s.NICForwarding(tcpip.NICID(id), ipv4.ProtocolNumber); err == nil && on {
			fwd = 1
		}
	}
	var b bytes.Buffer
	row("Ip",
		"Forwarding", fwd,
		"DefaultTTL", 64,
		"InReceives", ip.PacketsReceived,
		"InHdrErrors", ip.MalformedPacketsReceived,
		"InAddrErrors", ip.InvalidDestinationAddressesReceived,
		"ForwDatagrams", 0,
		"InUnknownProtos", 0,
		"InDiscards", s.DroppedPackets, // all the stack's drops
		"InDelivers", ip.PacketsDelivered,
		"OutRequests", ip.PacketsSent,
		"OutDiscards", ip.OutgoingPacketErrors,
		"OutNoRoutes", 0,
		"ReasmTimeout", 0,
		"ReasmReqds", 0,
		"ReasmOKs", 0,
		"ReasmFails", ip.MalformedFragmentsReceived,
		"FragOKs", 0,
		"FragFails", 0,
		"FragCreates", 0,
	).write(&b)
	row("Icmp",
		"InMsgs", icmp.PacketsReceived.EchoRequest.Value()+icmp.PacketsReceived.EchoReply.Value()+
			icmp.PacketsReceived.DstUnreachable.Value()+icmp.PacketsReceived.TimeExceeded.Value(),
		"InErrors", icmp.PacketsReceived.Invalid,
		"InCsumErrors", 0,
		"InDestUnreachs", icmp.PacketsReceived.DstUnreachable,
		"InTimeExcds", icmp.PacketsReceived.TimeExceeded,
		"InEchos", icmp.PacketsReceived.EchoRequest,
		"InEchoReps", icmp.PacketsReceived.EchoReply,
		"OutMsgs", icmp.PacketsSent.EchoRequest.Value()+icmp.PacketsSent.EchoReply.Value()+
			icmp.PacketsSent.DstUnreachable.Value()+icmp.PacketsSent.TimeExceeded.Value(),
		"OutErrors", icmp.PacketsSent.Dropped,
		"OutDestUnreachs", icmp.PacketsSent.DstUnreachable,
		"OutTimeExcds", icmp.PacketsSent.TimeExceeded,
		"OutEchos", icmp.PacketsSent.EchoRequest,
		"OutEchoReps", icmp.PacketsSent.EchoReply,
	).write(&b)
	row("Tcp",
		"RtoAlgorithm", 1,
		"RtoMin", 200,
		"RtoMax", 120000,
		"MaxConn", -1,
		"ActiveOpens", tcp.ActiveConnectionOpenings,
		"PassiveOpens", tcp.PassiveConnectionOpenings,
		"AttemptFails", tcp.FailedConnectionAttempts,
		"EstabResets", tcp.EstablishedResets,
		"CurrEstab", tcp.CurrentEstablished,
		"InSegs", tcp.ValidSegmentsReceived,
		"OutSegs", tcp.SegmentsSent,
		"RetransSegs", tcp.Retransmits,
		"InErrs", tcp.InvalidSegmentsReceived,
		"OutRsts", tcp.ResetsSent,
		"InCsumErrors", tcp.ChecksumErrors,
	).write(&b)
	row("Udp",
		"InDatagrams", udp.PacketsReceived,
		"NoPorts", udp.UnknownPortErrors,
		"InErrors", udp.MalformedPacketsReceived,
		"OutDatagrams", udp.PacketsSent,
		"RcvbufErrors", udp.ReceiveBufferErrors,
		"SndbufErrors", udp.PacketSendErrors,
		"InCsumErrors", udp.ChecksumErrors,
		"IgnoredMulti", 0,
		"MemErrors", 0,
	).write(&b)
	return b.Bytes()
}

// Netstat returns the TcpExt counters gVisor keeps, as Linux's
// /proc/net/netstat names them.
func (st *Stack) Netstat() []byte {
	tcp := st.s.Stats().TCP
	var b bytes.Buffer
	row("TcpExt",
		"SyncookiesSent", tcp.ListenOverflowSynCookieSent,
		"SyncookiesRecv", tcp.ListenOverflowSynCookieRcvd,
		"SyncookiesFailed", tcp.ListenOverflowInvalidSynCookieRcvd,
		"ListenOverflows", tcp.ListenOverflowSynDrop,
		"ListenDrops", tcp.ListenOverflowAckDrop,
		"TCPLossProbeRecovery", tcp.TLPRecovery,
		"TCPSackRecovery", tcp.SACKRecovery,
		"TCPRenoRecovery", tcp.FastRecovery,
		"TCPFastRetrans", tcp.FastRetransmit,
		"TCPSlowStartRetrans", tcp.SlowStartRetransmits,
		"TCPTimeouts", tcp.Timeouts,
		"TCPDSACKRecv", tcp.SegmentsAckedWithDSACK,
		"TCPSpuriousRTOs", tcp.SpuriousRTORecovery,
	).write(&b)
	return b.Bytes()
}

package nat

import (
	"time"

	"github.com/unikgo/unikgo/services/packet"
)

// state is where a flow is in its life. TCP tracking follows the flags only
// (no sequence-window checks): enough to pick timeouts and eviction order,
// which is what a masquerading firewall needs.
type state uint8

const (
	tcpSynSent     state = iota + 1 // client sent SYN, no SYN-ACK yet
	tcpEstablished                  // SYN-ACK seen, or picked up mid-stream
	tcpFin                          // FIN seen in either direction
	tcpRst                          // RST seen
	udpFlow
	icmpFlow
)

// direction of a packet relative to the client.
type direction uint8

const (
	dirOut direction = iota // client to remote
	dirIn                   // remote to client
)

// initialState is the state of a flow opened by an outbound packet. TCP
// without SYN is picked up mid-stream (as Linux conntrack does by default),
// so connections survive a FlushClient that the new rules still allow; it
// stays unassured, with the SYN timeout, until the remote side answers.
func initialState(proto uint8, flags uint8) state {
	switch proto {
	case packet.ProtoTCP:
		if flags&packet.TCPFlagSYN != 0 && flags&packet.TCPFlagACK == 0 {
			return tcpSynSent
		}
		return tcpEstablished
	case packet.ProtoUDP:
		return udpFlow
	}
	return icmpFlow
}

// listFor returns the eviction list the flow's state belongs on.
func (f *flow) listFor() uint8 {
	if !f.replied {
		return listUnassured
	}
	switch f.state {
	case tcpSynSent, tcpFin, tcpRst:
		return listUnassured
	}
	return listAssured
}

// timeout returns the idle timeout for the flow's current state.
func (f *flow) timeout(to *Timeouts) time.Duration {
	switch f.state {
	case tcpSynSent:
		return to.TCPSyn
	case tcpEstablished:
		if f.replied {
			return to.TCPEstablished
		}
		return to.TCPSyn
	case tcpFin:
		return to.TCPFin
	case tcpRst:
		return to.TCPRst
	case udpFlow:
		if f.replied {
			return to.UDPReplied
		}
		return to.UDP
	}
	return to.ICMP
}

// observe advances flow i for a packet in direction d (TCP flags in
// flags), refreshes its deadline and moves it in the eviction order.
func (t *Table) observe(i int32, d direction, flags uint8, now int64) {
	f := t.flow(i)
	if f.key.Proto == packet.ProtoTCP {
		f.state = nextTCPState(f.state, d, flags)
		if f.state == tcpSynSent {
			// A new SYN on a closed tuple starts over.
			f.replied = false
		}
	}
	if d == dirIn {
		f.replied = true
	}
	f.deadline = now + int64(f.timeout(&t.cfg.Timeouts))
	t.touch(i)
}

func nextTCPState(s state, d direction, flags uint8) state {
	syn := flags&packet.TCPFlagSYN != 0
	ack := flags&packet.TCPFlagACK != 0
	switch {
	case flags&packet.TCPFlagRST != 0:
		return tcpRst
	case (s == tcpFin || s == tcpRst) && d == dirOut && syn && !ack:
		return tcpSynSent
	case s == tcpRst:
		return tcpRst
	case flags&packet.TCPFlagFIN != 0:
		return tcpFin
	case s == tcpSynSent && d == dirIn && syn && ack:
		return tcpEstablished
	}
	return s
}

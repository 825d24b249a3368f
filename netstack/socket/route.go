package socket

import (
	"bytes"
	"cmp"
	"slices"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Operational states of IFLA_OPERSTATE (RFC 2863, linux/if.h).
const (
	ifOperUnknown = 0
	ifOperDown    = 2
	ifOperUp      = 6
)

// nlAlign rounds up to netlink's 4-byte alignment.
func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// nlHeader is a struct nlmsghdr.
type nlHeader struct {
	len   uint32
	typ   uint16
	flags uint16
	seq   uint32
	pid   uint32
}

func parseHeader(b []byte) nlHeader {
	return nlHeader{len: ne.Uint32(b), typ: ne.Uint16(b[4:]), flags: ne.Uint16(b[6:]), seq: ne.Uint32(b[8:]), pid: ne.Uint32(b[12:])}
}

// nlMsg builds one netlink message: a header, a fixed family header, then
// attributes.
type nlMsg struct{ b []byte }

func newMsg(typ, flags uint16, seq, pid uint32, fixed []byte) *nlMsg {
	m := &nlMsg{b: make([]byte, unix.NLMSG_HDRLEN, 256)}
	ne.PutUint16(m.b[4:], typ)
	ne.PutUint16(m.b[6:], flags)
	ne.PutUint32(m.b[8:], seq)
	ne.PutUint32(m.b[12:], pid)
	m.b = append(m.b, fixed...)
	return m
}

// pad aligns the message's end.
func (m *nlMsg) pad() {
	for len(m.b)%unix.NLMSG_ALIGNTO != 0 {
		m.b = append(m.b, 0)
	}
}

// attr appends an rtattr, padded.
func (m *nlMsg) attr(typ uint16, data []byte) {
	m.pad()
	var h [unix.SizeofRtAttr]byte
	ne.PutUint16(h[:], uint16(unix.SizeofRtAttr+len(data)))
	ne.PutUint16(h[2:], typ)
	m.b = append(m.b, h[:]...)
	m.b = append(m.b, data...)
	m.pad()
}

func (m *nlMsg) u32(typ uint16, v uint32) {
	var b [4]byte
	ne.PutUint32(b[:], v)
	m.attr(typ, b[:])
}

func (m *nlMsg) u8(typ uint16, v uint8) { m.attr(typ, []byte{v}) }

func (m *nlMsg) str(typ uint16, s string) { m.attr(typ, append([]byte(s), 0)) }

// done sets the message length and returns its bytes, padded so that a
// message may follow. As in Linux, the length does not count padding
// after an unaligned fixed part (an error's echoed request).
func (m *nlMsg) done() []byte {
	ne.PutUint32(m.b, uint32(len(m.b)))
	m.pad()
	return m.b
}

// parseAttrs reads rtattrs up to the first malformed one, as Linux's
// liberal parsing does; later attributes of a type replace earlier ones.
func parseAttrs(b []byte) map[uint16][]byte {
	attrs := make(map[uint16][]byte)
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		attrs[ne.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER)] = b[unix.SizeofRtAttr:l]
		b = b[min(nlAlign(l), len(b)):]
	}
	return attrs
}

// errDumpStarted is request's internal answer for a dump under way: no
// acknowledgement follows, the dump ends with NLMSG_DONE.
const errDumpStarted = unix.Errno(0xffff)

// request handles the messages of one sendmsg to the kernel, as Linux's
// netlink_rcv_skb: it stops at the first message whose length is wrong,
// ignores what is not a request and acknowledges errors, and successes
// when asked (NLM_F_ACK).
func (nl *netlinkSock) request(req []byte, port uint32) {
	for len(req) >= unix.NLMSG_HDRLEN {
		h := parseHeader(req)
		if h.len < unix.NLMSG_HDRLEN || uint64(h.len) > uint64(len(req)) {
			return
		}
		msg := req[:h.len]
		if h.flags&unix.NLM_F_REQUEST != 0 {
			var e unix.Errno
			if h.typ >= unix.NLMSG_MIN_TYPE {
				e = nl.rtnetlink(h, msg[unix.NLMSG_HDRLEN:], port)
			}
			if e != errDumpStarted && (e != 0 || h.flags&unix.NLM_F_ACK != 0) {
				nl.ack(msg, e, port)
			}
		}
		req = req[min(nlAlign(int(h.len)), len(req)):]
	}
}

// ack queues an NLMSG_ERROR answering msg with e (0: an acknowledgement).
// An error carries the request back unless NETLINK_CAP_ACK is set.
func (nl *netlinkSock) ack(msg []byte, e unix.Errno, port uint32) {
	nl.mu.Lock()
	capAck := nl.capAck
	nl.mu.Unlock()
	h := parseHeader(msg)
	var flags uint16
	echo := msg[:unix.NLMSG_HDRLEN]
	if e != 0 && !capAck {
		echo = msg
	} else {
		flags |= unix.NLM_F_CAPPED
	}
	fixed := make([]byte, 4, 4+len(echo))
	ne.PutUint32(fixed, uint32(-int32(e)))
	fixed = append(fixed, echo...)
	m := newMsg(unix.NLMSG_ERROR, flags, h.seq, port, fixed)
	nl.deliver(nlDgram{b: m.done()})
}

// rtnetlink answers one NETLINK_ROUTE request.
func (nl *netlinkSock) rtnetlink(h nlHeader, payload []byte, port uint32) unix.Errno {
	if h.typ > unix.RTM_MAX {
		return unix.EOPNOTSUPP
	}
	if len(payload) < 1 {
		return 0 // Linux drops requests without even an rtgenmsg
	}
	nl.mu.Lock()
	strict := nl.strict
	nl.mu.Unlock()
	get := (h.typ-unix.RTM_BASE)&3 == 2
	if !get {
		return unix.EOPNOTSUPP // no configuration through netlink
	}
	if h.flags&unix.NLM_F_DUMP != unix.NLM_F_DUMP {
		if h.typ == unix.RTM_GETLINK {
			return nl.getLink(h, payload, port)
		}
		return unix.EOPNOTSUPP
	}
	var (
		msgs [][]byte
		e    unix.Errno
	)
	info := nl.s.ss.st.Gvisor().NICInfo()
	switch h.typ {
	case unix.RTM_GETLINK:
		if strict && len(payload) < unix.SizeofIfInfomsg {
			return unix.EINVAL
		}
		for _, id := range sortedNICs(info) {
			msgs = append(msgs, linkMsg(id, info[id], unix.NLM_F_MULTI, h.seq, port))
		}
	case unix.RTM_GETADDR:
		msgs, e = addrDump(info, payload, strict, h.seq, port)
	case unix.RTM_GETROUTE:
		msgs, e = routeDump(nl.s.ss.st.Gvisor().GetRouteTable(), payload, strict, h.seq, port)
	default:
		return unix.EOPNOTSUPP
	}
	if e != 0 {
		return e
	}
	if nl.dumping() {
		return unix.EBUSY // one dump at a time, as Linux
	}
	var done [4]byte // the dump's status: 0
	msgs = append(msgs, newMsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, h.seq, port, done[:]).done())
	var d []byte
	for _, m := range msgs {
		if len(d) > 0 && len(d)+len(m) > dumpSize {
			nl.deliver(nlDgram{b: d, dump: true})
			d = nil
		}
		d = append(d, m...)
	}
	nl.deliver(nlDgram{b: d, dump: true})
	return errDumpStarted
}

func sortedNICs(info map[tcpip.NICID]stack.NICInfo) []tcpip.NICID {
	ids := make([]tcpip.NICID, 0, len(info))
	for id := range info {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// getLink answers an RTM_GETLINK for one interface, by ifi_index or by
// IFLA_IFNAME.
func (nl *netlinkSock) getLink(h nlHeader, payload []byte, port uint32) unix.Errno {
	if len(payload) < unix.SizeofIfInfomsg {
		return unix.EINVAL
	}
	index := int32(ne.Uint32(payload[4:]))
	attrs := parseAttrs(payload[unix.SizeofIfInfomsg:])
	info := nl.s.ss.st.Gvisor().NICInfo()
	var id tcpip.NICID
	switch name, ok := attrs[unix.IFLA_IFNAME]; {
	case index > 0:
		id = tcpip.NICID(index)
		if _, ok := info[id]; !ok {
			return unix.ENODEV
		}
	case ok:
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) >= unix.IFNAMSIZ {
			return unix.EINVAL
		}
		for nid, ni := range info {
			if ni.Name == string(name) {
				id = nid
			}
		}
		if id == 0 {
			return unix.ENODEV
		}
	default:
		return unix.EINVAL
	}
	nl.deliver(nlDgram{b: linkMsg(id, info[id], 0, h.seq, port)})
	return 0
}

// linkMsg renders an RTM_NEWLINK for a NIC: an ifinfomsg and the
// attributes ip link shows.
func linkMsg(id tcpip.NICID, ni stack.NICInfo, flags uint16, seq, port uint32) []byte {
	loop := ni.Flags.Loopback
	var iff uint32
	if ni.Flags.Up {
		iff |= unix.IFF_UP
	}
	if ni.Flags.Running {
		iff |= unix.IFF_RUNNING | unix.IFF_LOWER_UP
	}
	if ni.Flags.Promiscuous {
		iff |= unix.IFF_PROMISC
	}
	arp := uint16(unix.ARPHRD_ETHER)
	if loop {
		iff |= unix.IFF_LOOPBACK
		arp = unix.ARPHRD_LOOPBACK
	} else {
		iff |= unix.IFF_BROADCAST | unix.IFF_MULTICAST
	}
	fixed := make([]byte, unix.SizeofIfInfomsg)
	fixed[0] = unix.AF_UNSPEC
	ne.PutUint16(fixed[2:], arp)
	ne.PutUint32(fixed[4:], uint32(id))
	ne.PutUint32(fixed[8:], iff)
	m := newMsg(unix.RTM_NEWLINK, flags, seq, port, fixed)
	m.str(unix.IFLA_IFNAME, ni.Name)
	m.u32(unix.IFLA_TXQLEN, 1000)
	oper := uint8(ifOperDown)
	switch {
	case loop:
		oper = ifOperUnknown // as Linux reports lo
	case ni.Flags.Running:
		oper = ifOperUp
	}
	m.u8(unix.IFLA_OPERSTATE, oper)
	m.u8(unix.IFLA_LINKMODE, 0)
	m.u32(unix.IFLA_MTU, ni.MTU)
	m.u32(unix.IFLA_GROUP, 0)
	m.u32(unix.IFLA_PROMISCUITY, uint32(boolInt(ni.Flags.Promiscuous)))
	m.u32(unix.IFLA_NUM_TX_QUEUES, 1)
	m.u32(unix.IFLA_NUM_RX_QUEUES, 1)
	m.u8(unix.IFLA_CARRIER, uint8(boolInt(ni.Flags.Running)))
	mac := make([]byte, header.EthernetAddressSize)
	bcast := make([]byte, header.EthernetAddressSize)
	if !loop {
		copy(mac, ni.LinkAddress)
		copy(bcast, header.EthernetBroadcastAddress)
	}
	m.attr(unix.IFLA_ADDRESS, mac)
	m.attr(unix.IFLA_BROADCAST, bcast)
	return m.done()
}

// familyOf is the address family (AF_INET, AF_INET6) of a network
// protocol, or 0.
func familyOf(p tcpip.NetworkProtocolNumber) int {
	switch p {
	case ipv4.ProtocolNumber:
		return unix.AF_INET
	case ipv6.ProtocolNumber:
		return unix.AF_INET6
	}
	return 0
}

// addrDump renders RTM_NEWADDR messages for the addresses of the
// requested family (the first payload byte; AF_UNSPEC for all): IPv4
// ones first, then IPv6, each by interface, as Linux's dump of all
// families. With strict checking the request must be a whole ifaddrmsg
// and a non-zero ifa_index selects one interface.
func addrDump(info map[tcpip.NICID]stack.NICInfo, payload []byte, strict bool, seq, port uint32) ([][]byte, unix.Errno) {
	family := int(payload[0])
	var only tcpip.NICID
	if strict {
		if len(payload) < unix.SizeofIfAddrmsg {
			return nil, unix.EINVAL
		}
		only = tcpip.NICID(ne.Uint32(payload[4:]))
	}
	var msgs [][]byte
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if family != unix.AF_UNSPEC && family != fam {
			continue
		}
		for _, id := range sortedNICs(info) {
			if only != 0 && id != only {
				continue
			}
			ni := info[id]
			for _, pa := range ni.ProtocolAddresses {
				if familyOf(pa.Protocol) == fam {
					msgs = append(msgs, addrMsg(id, ni, pa, seq, port))
				}
			}
		}
	}
	return msgs, 0
}

// addrMsg renders an RTM_NEWADDR: an ifaddrmsg, IFA_ADDRESS first (Go's
// net package takes the first address attribute unless IFA_LOCAL is
// present), then IFA_LOCAL, IFA_BROADCAST and IFA_LABEL for IPv4, and
// IFA_FLAGS and IFA_CACHEINFO.
func addrMsg(id tcpip.NICID, ni stack.NICInfo, pa tcpip.ProtocolAddress, seq, port uint32) []byte {
	a := pa.AddressWithPrefix
	fam := familyOf(pa.Protocol)
	scope := uint8(unix.RT_SCOPE_UNIVERSE)
	switch {
	case a.Address.Len() == 4 && a.Address.AsSlice()[0] == 127, a.Address == header.IPv6Loopback:
		scope = unix.RT_SCOPE_HOST
	case header.IsV6LinkLocalUnicastAddress(a.Address):
		scope = unix.RT_SCOPE_LINK
	}
	flags := uint32(unix.IFA_F_PERMANENT)
	fixed := make([]byte, unix.SizeofIfAddrmsg)
	fixed[0] = uint8(fam)
	fixed[1] = uint8(a.PrefixLen)
	fixed[2] = uint8(flags)
	fixed[3] = scope
	ne.PutUint32(fixed[4:], uint32(id))
	m := newMsg(unix.RTM_NEWADDR, unix.NLM_F_MULTI, seq, port, fixed)
	m.attr(unix.IFA_ADDRESS, a.Address.AsSlice())
	if fam == unix.AF_INET {
		m.attr(unix.IFA_LOCAL, a.Address.AsSlice())
		if !ni.Flags.Loopback && a.PrefixLen <= 30 {
			sub := a.Subnet()
			bc := sub.Broadcast()
			m.attr(unix.IFA_BROADCAST, bc.AsSlice())
		}
		m.str(unix.IFA_LABEL, ni.Name)
	}
	m.u32(unix.IFA_FLAGS, flags)
	ci := make([]byte, unix.SizeofIfaCacheinfo)
	ne.PutUint32(ci, 0xffffffff)     // ifa_prefered: forever
	ne.PutUint32(ci[4:], 0xffffffff) // ifa_valid: forever
	m.attr(unix.IFA_CACHEINFO, ci)
	return m.done()
}

// routeDump renders RTM_NEWROUTE messages for the main table's routes of
// the requested family.
func routeDump(routes []tcpip.Route, payload []byte, strict bool, seq, port uint32) ([][]byte, unix.Errno) {
	if strict && len(payload) < unix.SizeofRtMsg {
		return nil, unix.EINVAL
	}
	family := int(payload[0])
	var msgs [][]byte
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if family != unix.AF_UNSPEC && family != fam {
			continue
		}
		rs := slices.Clone(routes)
		slices.SortStableFunc(rs, func(a, b tcpip.Route) int { return cmp.Compare(b.Destination.Prefix(), a.Destination.Prefix()) })
		for _, r := range rs {
			dst := r.Destination.ID()
			if (dst.Len() == 4) != (fam == unix.AF_INET) {
				continue
			}
			gw := r.Gateway.Len() != 0 && !r.Gateway.Unspecified()
			fixed := make([]byte, unix.SizeofRtMsg)
			fixed[0] = uint8(fam)
			fixed[1] = uint8(r.Destination.Prefix())
			fixed[4] = unix.RT_TABLE_MAIN
			fixed[5] = unix.RTPROT_KERNEL
			fixed[6] = unix.RT_SCOPE_LINK
			if gw {
				fixed[5] = unix.RTPROT_BOOT
				fixed[6] = unix.RT_SCOPE_UNIVERSE
			}
			fixed[7] = unix.RTN_UNICAST
			m := newMsg(unix.RTM_NEWROUTE, unix.NLM_F_MULTI, seq, port, fixed)
			m.u32(unix.RTA_TABLE, unix.RT_TABLE_MAIN)
			if r.Destination.Prefix() > 0 {
				m.attr(unix.RTA_DST, dst.AsSlice())
			}
			if gw {
				m.attr(unix.RTA_GATEWAY, r.Gateway.AsSlice())
			}
			m.u32(unix.RTA_OIF, uint32(r.NIC))
			msgs = append(msgs, m.done())
		}
	}
	return msgs, 0
}

package socket

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// nlRequest renders one request: a header and payload.
func nlRequest(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload))
	binary.NativeEndian.PutUint32(b, uint32(16+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return append(b, payload...)
}

// ribDump does what syscall.NetlinkRIB does on a socket of ours: send a
// dump request with an rtgenmsg and read page-sized datagrams until
// NLMSG_DONE, checking each message's sequence and port id. It returns
// the messages, parsed by package syscall.
func ribDump(t testing.TB, ss *Sockets, typ uint16, family byte) []syscall.NetlinkMessage {
	t.Helper()
	ctx := ctxT(t)
	s := mustSocket(t, ss, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	must(t, "bind", s.Bind(encodeNetlink(0, 0)))
	req := nlRequest(typ, unix.NLM_F_DUMP|unix.NLM_F_REQUEST, 1, []byte{family})
	if n, e := s.SendMsg(ctx, [][]byte{req}, encodeNetlink(0, 0), 0); n != len(req) || e != 0 {
		t.Fatalf("sendto: %d, %v", n, e)
	}
	name, e := s.Getsockname()
	must(t, "getsockname", e)
	port := binary.NativeEndian.Uint32(name[4:])
	var out []syscall.NetlinkMessage
	for {
		rb := make([]byte, os.Getpagesize())
		n, from, flags, e := s.RecvMsg(ctx, [][]byte{rb}, 0)
		must(t, "recvfrom", e)
		if flags&unix.MSG_TRUNC != 0 {
			t.Fatalf("a datagram of more than %d bytes", len(rb))
		}
		if diff := cmp.Diff(encodeNetlink(0, 0), from); diff != "" {
			t.Errorf("sender is not the kernel:\n%s", diff)
		}
		msgs, err := syscall.ParseNetlinkMessage(rb[:n])
		if err != nil {
			t.Fatalf("ParseNetlinkMessage: %v", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != 1 || m.Header.Pid != port {
				t.Fatalf("message seq %d pid %d, want 1 and %d", m.Header.Seq, m.Header.Pid, port)
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if len(m.Data) != 4 || m.Header.Flags&unix.NLM_F_MULTI == 0 {
					t.Errorf("NLMSG_DONE %+v %x", m.Header, m.Data)
				}
				if ev := s.Events(); ev&unix.EPOLLIN != 0 {
					t.Errorf("events %#x after the dump", ev)
				}
				return out
			case unix.NLMSG_ERROR:
				t.Fatalf("error reply %x", m.Data)
			}
			if m.Header.Flags&unix.NLM_F_MULTI == 0 {
				t.Errorf("dump message without NLM_F_MULTI: %+v", m.Header)
			}
			out = append(out, m)
		}
	}
}

type link struct {
	Index, Type int
	Flags       uint32
	Name        string
	MTU         uint32
	Addr, Bcast string
	OperState   uint8
}

// links decodes RTM_NEWLINK messages as Go's net.interfaceTable does.
func links(t testing.TB, msgs []syscall.NetlinkMessage) []link {
	t.Helper()
	var out []link
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK {
			t.Fatalf("message type %d in link dump", m.Header.Type)
		}
		ifim := (*syscall.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			t.Fatal(err)
		}
		l := link{Index: int(ifim.Index), Type: int(ifim.Type), Flags: ifim.Flags}
		for _, a := range attrs {
			switch a.Attr.Type {
			case syscall.IFLA_IFNAME:
				l.Name = string(a.Value[:len(a.Value)-1])
			case syscall.IFLA_MTU:
				l.MTU = binary.NativeEndian.Uint32(a.Value)
			case syscall.IFLA_ADDRESS:
				l.Addr = net.HardwareAddr(a.Value).String()
			case syscall.IFLA_BROADCAST:
				l.Bcast = net.HardwareAddr(a.Value).String()
			case unix.IFLA_OPERSTATE:
				l.OperState = a.Value[0]
			}
		}
		out = append(out, l)
	}
	return out
}

type ifaddr struct {
	Index        int
	Prefix       string // as Go's net.newAddr reads it
	Scope, Flags uint8
	Label        string
	Broadcast    string
}

// addrs decodes RTM_NEWADDR messages as Go's net.addrTable and newAddr do.
func addrs(t testing.TB, msgs []syscall.NetlinkMessage) []ifaddr {
	t.Helper()
	var out []ifaddr
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWADDR {
			t.Fatalf("message type %d in address dump", m.Header.Type)
		}
		ifam := (*syscall.IfAddrmsg)(unsafe.Pointer(&m.Data[0]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			t.Fatal(err)
		}
		a := ifaddr{Index: int(ifam.Index), Scope: ifam.Scope, Flags: ifam.Flags}
		ptp := false
		for _, at := range attrs {
			if at.Attr.Type == syscall.IFA_LOCAL {
				ptp = true
			}
		}
		for _, at := range attrs {
			switch at.Attr.Type {
			case syscall.IFA_LABEL:
				a.Label = string(at.Value[:len(at.Value)-1])
			case syscall.IFA_BROADCAST:
				a.Broadcast = net.IP(at.Value).String()
			}
			if a.Prefix != "" || (ptp && at.Attr.Type == syscall.IFA_ADDRESS) {
				continue
			}
			bits := 32
			if ifam.Family == syscall.AF_INET6 {
				bits = 128
			}
			ip := net.IP(at.Value)
			a.Prefix = (&net.IPNet{IP: ip, Mask: net.CIDRMask(int(ifam.Prefixlen), bits)}).String()
		}
		out = append(out, a)
	}
	return out
}

func TestNetlinkLinks(t *testing.T) {
	a, _ := newPair(t)
	want := []link{
		{Index: 1, Type: unix.ARPHRD_LOOPBACK, Flags: unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING | unix.IFF_LOWER_UP, Name: "lo", MTU: 65536, Addr: "00:00:00:00:00:00", Bcast: "00:00:00:00:00:00", OperState: ifOperUnknown},
		{Index: 2, Type: unix.ARPHRD_ETHER, Flags: unix.IFF_UP | unix.IFF_BROADCAST | unix.IFF_MULTICAST | unix.IFF_RUNNING | unix.IFF_LOWER_UP, Name: "eth0", MTU: 1500, Addr: "02:00:00:00:00:01", Bcast: "ff:ff:ff:ff:ff:ff", OperState: ifOperUp},
	}
	if diff := cmp.Diff(want, links(t, ribDump(t, a, unix.RTM_GETLINK, unix.AF_UNSPEC))); diff != "" {
		t.Errorf("links (-want +got):\n%s", diff)
	}
}

func TestNetlinkAddrs(t *testing.T) {
	a, _ := newPair(t)
	perm := uint8(unix.IFA_F_PERMANENT)
	v4 := []ifaddr{
		{1, "127.0.0.1/8", unix.RT_SCOPE_HOST, perm, "lo", ""},
		{2, "10.0.0.1/24", unix.RT_SCOPE_UNIVERSE, perm, "eth0", "10.0.0.255"},
	}
	v6 := []ifaddr{
		{1, "::1/128", unix.RT_SCOPE_HOST, perm, "", ""},
		{2, "fd00::1/64", unix.RT_SCOPE_UNIVERSE, perm, "", ""},
		{2, "fe80::ff:fe00:1/64", unix.RT_SCOPE_LINK, perm, "", ""},
	}
	sortAddrs := cmp.Transformer("sort", func(in []ifaddr) []ifaddr {
		out := append([]ifaddr(nil), in...)
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				if fmt.Sprint(out[j]) < fmt.Sprint(out[i]) {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		return out
	})
	for _, tc := range []struct {
		name   string
		family byte
		want   []ifaddr
	}{
		{"all", unix.AF_UNSPEC, append(append([]ifaddr(nil), v4...), v6...)},
		{"IPv4", unix.AF_INET, v4},
		{"IPv6", unix.AF_INET6, v6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := addrs(t, ribDump(t, a, unix.RTM_GETADDR, tc.family))
			// IPv4 first, as Linux's dump of all families.
			for i := 1; i < len(got); i++ {
				if (got[i-1].Label == "") && got[i].Label != "" {
					t.Errorf("IPv6 address before IPv4 one: %v", got)
				}
			}
			if diff := cmp.Diff(tc.want, got, sortAddrs); diff != "" {
				t.Errorf("addresses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNetlinkRoutes(t *testing.T) {
	a, _ := newPair(t)
	type route struct {
		Family, Dst, Table, Scope, Proto int
		DstAddr, Gateway                 string
		OIF                              uint32
	}
	var got []route
	for _, m := range ribDump(t, a, unix.RTM_GETROUTE, unix.AF_INET) {
		rtm := (*syscall.RtMsg)(unsafe.Pointer(&m.Data[0]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			t.Fatal(err)
		}
		r := route{Family: int(rtm.Family), Dst: int(rtm.Dst_len), Table: int(rtm.Table), Scope: int(rtm.Scope), Proto: int(rtm.Protocol)}
		for _, at := range attrs {
			switch at.Attr.Type {
			case syscall.RTA_DST:
				r.DstAddr = net.IP(at.Value).String()
			case syscall.RTA_GATEWAY:
				r.Gateway = net.IP(at.Value).String()
			case syscall.RTA_OIF:
				r.OIF = binary.NativeEndian.Uint32(at.Value)
			}
		}
		got = append(got, r)
	}
	want := []route{
		{unix.AF_INET, 24, unix.RT_TABLE_MAIN, unix.RT_SCOPE_LINK, unix.RTPROT_KERNEL, "10.0.0.0", "", 2},
		{unix.AF_INET, 8, unix.RT_TABLE_MAIN, unix.RT_SCOPE_LINK, unix.RTPROT_KERNEL, "127.0.0.0", "", 1},
	}
	if diff := cmp.Diff(want, got, cmp.Transformer("sort", func(in []route) map[string]route {
		m := make(map[string]route)
		for _, r := range in {
			m[r.DstAddr] = r
		}
		return m
	})); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}

// TestNetlinkBigDump has more addresses than one datagram carries: the
// dump spans datagrams that each fit a page.
func TestNetlinkBigDump(t *testing.T) {
	lo := newLoopback(t)
	for i := 2; i < 200; i++ {
		if err := lo.Stack().AddAddress(1, netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}), 8)); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(addrs(t, ribDump(t, lo, unix.RTM_GETADDR, unix.AF_INET))); got != 199 {
		t.Errorf("%d addresses, want 199", got)
	}
}

// nlExchange sends req on a fresh netlink socket and returns every
// message that comes back.
func nlExchange(t testing.TB, s *Socket, req []byte) []syscall.NetlinkMessage {
	t.Helper()
	ctx := ctxT(t)
	if n, e := s.SendMsg(ctx, [][]byte{req}, nil, 0); n != len(req) || e != 0 {
		t.Fatalf("send: %d, %v", n, e)
	}
	var out []syscall.NetlinkMessage
	for {
		b := make([]byte, 1<<16)
		n, _, _, e := s.RecvMsg(ctx, [][]byte{b}, unix.MSG_DONTWAIT)
		if e == unix.EAGAIN {
			return out
		}
		must(t, "recv", e)
		msgs, err := syscall.ParseNetlinkMessage(b[:n])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msgs...)
	}
}

type reply struct {
	Type, Flags uint16
	Seq         uint32
	Errno       unix.Errno // of NLMSG_ERROR
	Echo        int        // bytes of the request echoed after the error
}

func summarize(t testing.TB, msgs []syscall.NetlinkMessage) []reply {
	var out []reply
	for _, m := range msgs {
		r := reply{Type: m.Header.Type, Flags: m.Header.Flags, Seq: m.Header.Seq}
		if m.Header.Type == unix.NLMSG_ERROR {
			if len(m.Data) < unix.SizeofNlMsgerr {
				t.Fatalf("short NLMSG_ERROR %x", m.Data)
			}
			r.Errno = unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
			r.Echo = len(m.Data) - 4
		}
		out = append(out, r)
	}
	return out
}

func TestNetlinkRequests(t *testing.T) {
	a, _ := newPair(t)
	ifinfo := func(index int32) []byte {
		b := make([]byte, unix.SizeofIfInfomsg)
		binary.NativeEndian.PutUint32(b[4:], uint32(index))
		return b
	}
	withName := func(name string) []byte {
		b := ifinfo(0)
		attr := make([]byte, 4, 4+len(name)+1)
		binary.NativeEndian.PutUint16(attr, uint16(4+len(name)+1))
		binary.NativeEndian.PutUint16(attr[2:], unix.IFLA_IFNAME)
		attr = append(attr, name...)
		attr = append(attr, 0)
		return append(b, attr...)
	}
	req := func(typ, flags uint16, payload []byte) []byte {
		return nlRequest(typ, flags|unix.NLM_F_REQUEST, 7, payload)
	}
	const capped = unix.NLM_F_CAPPED
	for _, tc := range []struct {
		name   string
		req    []byte
		capAck bool
		want   []reply
	}{
		{"link by index", req(unix.RTM_GETLINK, 0, ifinfo(2)), false, []reply{{Type: unix.RTM_NEWLINK, Seq: 7}}},
		{"link by index, acked", req(unix.RTM_GETLINK, unix.NLM_F_ACK, ifinfo(1)), false, []reply{{Type: unix.RTM_NEWLINK, Seq: 7}, {Type: unix.NLMSG_ERROR, Flags: capped, Seq: 7, Echo: 16}}},
		{"link by name", req(unix.RTM_GETLINK, 0, withName("eth0")), false, []reply{{Type: unix.RTM_NEWLINK, Seq: 7}}},
		{"unknown index", req(unix.RTM_GETLINK, 0, ifinfo(9)), false, []reply{{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.ENODEV, Echo: 32}}},
		{"unknown index, capped", req(unix.RTM_GETLINK, 0, ifinfo(9)), true, []reply{{Type: unix.NLMSG_ERROR, Flags: capped, Seq: 7, Errno: unix.ENODEV, Echo: 16}}},
		{"unknown name", req(unix.RTM_GETLINK, 0, withName("eth7")), false, []reply{{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.ENODEV, Echo: 41}}},
		{"link without ifinfomsg", req(unix.RTM_GETLINK, 0, []byte{0}), false, []reply{{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.EINVAL, Echo: 17}}},
		{"link without index or name", req(unix.RTM_GETLINK, 0, ifinfo(0)), false, []reply{{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.EINVAL, Echo: 32}}},
		{"address without dump", req(unix.RTM_GETADDR, 0, []byte{0}), false, []reply{{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.EOPNOTSUPP, Echo: 17}}},
		{"configuration refused", req(unix.RTM_NEWADDR, unix.NLM_F_ACK|unix.NLM_F_CREATE, make([]byte, 8)), false, []reply{{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.EOPNOTSUPP, Echo: 24}}},
		{"unknown type", req(0x7fff, 0, []byte{0}), false, []reply{{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.EOPNOTSUPP, Echo: 17}}},
		{"unhandled dump", req(unix.RTM_GETNEIGH, unix.NLM_F_DUMP, []byte{0}), false, []reply{{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.EOPNOTSUPP, Echo: 17}}},
		{"empty payload dropped", req(unix.RTM_GETLINK, unix.NLM_F_DUMP, nil), false, nil},
		{"empty payload acked", req(unix.RTM_GETLINK, unix.NLM_F_DUMP|unix.NLM_F_ACK, nil), false, []reply{{Type: unix.NLMSG_ERROR, Flags: capped, Seq: 7, Echo: 16}}},
		{"not a request", nlRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP, 7, []byte{0}), false, nil},
		{"control message acked", req(unix.NLMSG_NOOP, unix.NLM_F_ACK, nil), false, []reply{{Type: unix.NLMSG_ERROR, Flags: capped, Seq: 7, Echo: 16}}},
		{"length beyond buffer", req(unix.RTM_GETLINK, unix.NLM_F_DUMP, []byte{0})[:16], false, nil},
		{"short header", req(unix.RTM_GETLINK, unix.NLM_F_DUMP, []byte{0})[:10], false, nil},
		{"two in one, aligned", append(append(req(unix.RTM_GETLINK, 0, append(ifinfo(1), 0)), 0, 0, 0), req(unix.RTM_GETLINK, 0, ifinfo(2))...), false, []reply{{Type: unix.RTM_NEWLINK, Seq: 7}, {Type: unix.RTM_NEWLINK, Seq: 7}}},
		{"dump then error", append(req(unix.RTM_GETLINK, unix.NLM_F_DUMP, []byte{0, 0, 0, 0}), req(unix.RTM_GETLINK, 0, ifinfo(9))...), false, []reply{
			{Type: unix.RTM_NEWLINK, Flags: unix.NLM_F_MULTI, Seq: 7}, {Type: unix.RTM_NEWLINK, Flags: unix.NLM_F_MULTI, Seq: 7}, {Type: unix.NLMSG_DONE, Flags: unix.NLM_F_MULTI, Seq: 7},
			{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.ENODEV, Echo: 32}}},
		{"second dump busy", append(req(unix.RTM_GETLINK, unix.NLM_F_DUMP, []byte{0, 0, 0, 0}), req(unix.RTM_GETADDR, unix.NLM_F_DUMP, []byte{0, 0, 0, 0})...), false, []reply{
			{Type: unix.RTM_NEWLINK, Flags: unix.NLM_F_MULTI, Seq: 7}, {Type: unix.RTM_NEWLINK, Flags: unix.NLM_F_MULTI, Seq: 7}, {Type: unix.NLMSG_DONE, Flags: unix.NLM_F_MULTI, Seq: 7},
			{Type: unix.NLMSG_ERROR, Seq: 7, Errno: unix.EBUSY, Echo: 20}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSocket(t, a, unix.AF_NETLINK, unix.SOCK_DGRAM, unix.NETLINK_ROUTE)
			if tc.capAck {
				must(t, "NETLINK_CAP_ACK", setIntOpt(s, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1))
			}
			if diff := cmp.Diff(tc.want, summarize(t, nlExchange(t, s, tc.req))); diff != "" {
				t.Errorf("replies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNetlinkSocket(t *testing.T) {
	lo := newLoopback(t)
	ctx := ctxT(t)
	s := mustSocket(t, lo, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	for _, tc := range []struct {
		name string
		sa   []byte
		want unix.Errno
	}{
		{"short", encodeNetlink(0, 0)[:11], unix.EINVAL},
		{"wrong family", sockaddr(unix.AF_INET, netip.MustParseAddrPort("127.0.0.1:1"))[:12], unix.EINVAL},
	} {
		if e := s.Bind(tc.sa); e != tc.want {
			t.Errorf("bind %s: %v, want %v", tc.name, e, tc.want)
		}
	}
	// The first socket bound takes the pid, later ones negative ids.
	must(t, "bind", s.Bind(encodeNetlink(0, 1<<(unix.RTNLGRP_LINK-1))))
	name, e := s.Getsockname()
	must(t, "getsockname", e)
	if diff := cmp.Diff(encodeNetlink(uint32(os.Getpid()), 1<<(unix.RTNLGRP_LINK-1)), name); diff != "" {
		t.Errorf("getsockname (-want +got):\n%s", diff)
	}
	if e := s.Bind(encodeNetlink(12345, 0)); e != unix.EINVAL {
		t.Errorf("rebind to another id: %v, want EINVAL", e)
	}
	s2 := mustSocket(t, lo, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	if e := s2.Bind(encodeNetlink(uint32(os.Getpid()), 0)); e != unix.EADDRINUSE {
		t.Errorf("bind to a taken id: %v, want EADDRINUSE", e)
	}
	if _, e := s2.SendMsg(ctx, [][]byte{nlRequest(unix.RTM_GETLINK, unix.NLM_F_REQUEST, 1, ifinfoIndex(1))}, nil, 0); e != 0 {
		t.Fatal(e)
	}
	name2, _ := s2.Getsockname()
	if id := int32(binary.NativeEndian.Uint32(name2[4:])); id >= 0 {
		t.Errorf("second socket's autobound id %d, want negative", id)
	}

	// Readiness, notification, MSG_PEEK|MSG_TRUNC and FIONREAD.
	w := watch(s)
	if ev := s.Events(); ev != unix.EPOLLOUT|unix.EPOLLWRNORM {
		t.Errorf("idle events %#x", ev)
	}
	if _, e := s.Write(ctx, nlRequest(unix.RTM_GETLINK, unix.NLM_F_REQUEST, 1, ifinfoIndex(1))); e != 0 {
		t.Fatal(e)
	}
	w.waitEvents(t, s, unix.EPOLLIN)
	size, e := s.InQueue()
	must(t, "FIONREAD", e)
	n, _, flags, e := s.RecvMsg(ctx, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
	if n != size || flags != unix.MSG_TRUNC || e != 0 {
		t.Errorf("peek: %d %#x %v; want %d bytes, MSG_TRUNC", n, flags, e, size)
	}
	b := make([]byte, size)
	if n, e := s.Read(ctx, b); n != size || e != 0 {
		t.Errorf("read: %d %v", n, e)
	}
	if ev := s.Events(); ev&unix.EPOLLIN != 0 {
		t.Errorf("events %#x after reading", ev)
	}
	// Sending to a port nobody holds is refused; to another socket of
	// ours, delivered.
	if _, e := s.SendMsg(ctx, [][]byte{[]byte("hello")}, encodeNetlink(999, 0), 0); e != unix.ECONNREFUSED {
		t.Errorf("send to nobody: %v, want ECONNREFUSED", e)
	}
	if _, e := s.SendMsg(ctx, [][]byte{[]byte("hello")}, name2, 0); e != 0 {
		t.Errorf("send to a peer socket: %v", e)
	}
	nlExchange(t, s2, nil) // drains the reply s2 got
	if _, e := s.Getsockopt(unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, make([]byte, 4)); e != 0 {
		t.Errorf("NETLINK_CAP_ACK: %v", e)
	}
	if e := setIntOpt(s, unix.SOL_NETLINK, 999, 1); e != unix.ENOPROTOOPT {
		t.Errorf("unknown netlink option: %v", e)
	}
	if e := s.Listen(1); e != unix.EOPNOTSUPP {
		t.Errorf("listen: %v", e)
	}
	must(t, "close", s.Close(context.Background()))
	s3 := mustSocket(t, lo, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	must(t, "bind to the freed id", s3.Bind(encodeNetlink(uint32(os.Getpid()), 0)))
}

func ifinfoIndex(index int32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	return b
}

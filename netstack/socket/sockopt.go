package socket

import (
	"bytes"
	"math"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Linux's limits and defaults that socket options expose.
const (
	rmemMax        = 212992 // net.core.rmem_max
	wmemMax        = 212992 // net.core.wmem_max
	defaultTTL     = 64     // net.ipv4.ip_default_ttl, IPv6 hop_limit
	maxTCPKeepIdle = 32767  // MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL
	maxTCPKeepCnt  = 127    // MAX_TCP_KEEPCNT
	ifNameSize     = unix.IFNAMSIZ
	sizeofTimeval  = 16
	sizeofLinger   = 8
	sizeofMreq     = 8  // struct ip_mreq
	sizeofMreqn    = 12 // struct ip_mreqn
	sizeofMreq6    = 20 // struct ipv6_mreq
)

func putInt(v int) []byte {
	b := make([]byte, 4)
	ne.PutUint32(b, uint32(int32(v)))
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// getInt reads an int option value: Linux wants at least 4 bytes.
func getInt(val []byte) (int, unix.Errno) {
	if len(val) < 4 {
		return 0, unix.EINVAL
	}
	return int(int32(ne.Uint32(val))), 0
}

// getIPInt reads an IPPROTO_IP option value, which Linux also takes as a
// single byte.
func getIPInt(val []byte) int {
	switch {
	case len(val) >= 4:
		return int(int32(ne.Uint32(val)))
	case len(val) >= 1:
		return int(val[0])
	}
	return 0
}

// copyOut copies an option value into the program's buffer as Linux's
// getsockopt does: truncated to the buffer.
func copyOut(buf, v []byte) int { return copy(buf, v) }

// Getsockopt is getsockopt(2): it writes the option's value into buf (the
// program's optval, optlen bytes long) and returns the length to store in
// optlen. Unknown options answer ENOPROTOOPT.
func (s *Socket) Getsockopt(level, name int, buf []byte) (int, unix.Errno) {
	if s.isClosed() {
		return 0, unix.EBADF
	}
	if level == unix.SOL_SOCKET {
		v, e := s.getSocketOpt(name, len(buf))
		if e != 0 {
			return 0, e
		}
		return copyOut(buf, v), 0
	}
	if s.nl != nil {
		v, e := s.nl.getsockopt(level, name)
		if e != 0 {
			return 0, e
		}
		return copyOut(buf, v), 0
	}
	is := s.inet
	switch {
	case level == unix.IPPROTO_TCP && is.stream:
		v, e := is.getTCPOpt(name)
		if e != 0 {
			return 0, e
		}
		return copyOut(buf, v), 0
	case level == unix.IPPROTO_IP:
		v, e := is.getIPOpt(name)
		if e != 0 {
			return 0, e
		}
		if len(v) == 4 && len(buf) > 0 && len(buf) < 4 {
			// A short buffer gets a byte, if the value fits one.
			if x := int32(ne.Uint32(v)); x >= 0 && x <= 255 {
				buf[0] = byte(x)
				return 1, 0
			}
		}
		return copyOut(buf, v), 0
	case level == unix.IPPROTO_IPV6 && is.v6():
		v, e := is.getIPv6Opt(name)
		if e != 0 {
			return 0, e
		}
		return copyOut(buf, v), 0
	}
	if !is.v6() {
		return 0, unix.EOPNOTSUPP // ip_getsockopt's answer to a foreign level
	}
	return 0, unix.ENOPROTOOPT
}

// Setsockopt is setsockopt(2) with the program's optval bytes.
func (s *Socket) Setsockopt(level, name int, val []byte) unix.Errno {
	if s.isClosed() {
		return unix.EBADF
	}
	if level == unix.SOL_SOCKET {
		return s.setSocketOpt(name, val)
	}
	if s.nl != nil {
		return s.nl.setsockopt(level, name, val)
	}
	is := s.inet
	switch {
	case level == unix.IPPROTO_TCP && is.stream:
		return is.setTCPOpt(name, val)
	case level == unix.IPPROTO_IP:
		return is.setIPOpt(name, val)
	case level == unix.IPPROTO_IPV6 && is.v6():
		return is.setIPv6Opt(name, val)
	}
	return unix.ENOPROTOOPT
}

func timeval(d time.Duration) []byte {
	b := make([]byte, sizeofTimeval)
	if d > 0 {
		ne.PutUint64(b, uint64(d/time.Second))
		ne.PutUint64(b[8:], uint64(d%time.Second/time.Microsecond))
	}
	return b
}

// parseTimeval reads SO_RCVTIMEO/SO_SNDTIMEO as Linux's sock_set_timeout:
// {0, 0} is no limit (0 here), a negative time "at once" (-1).
func parseTimeval(val []byte) (time.Duration, unix.Errno) {
	if len(val) < sizeofTimeval {
		return 0, unix.EINVAL
	}
	sec, usec := int64(ne.Uint64(val)), int64(ne.Uint64(val[8:]))
	if usec < 0 || usec >= 1e6 {
		return 0, unix.EDOM
	}
	if sec < 0 {
		return -1, 0
	}
	if sec == 0 && usec == 0 {
		return 0, 0
	}
	if sec >= math.MaxInt64/int64(time.Second)-1 {
		return 0, 0 // beyond any wait: no limit
	}
	return time.Duration(sec)*time.Second + time.Duration(usec)*time.Microsecond, 0
}

func (s *Socket) getSocketOpt(name, bufLen int) ([]byte, unix.Errno) {
	switch name {
	case unix.SO_TYPE:
		return putInt(s.stype), 0
	case unix.SO_PROTOCOL:
		return putInt(s.protocol), 0
	case unix.SO_DOMAIN:
		return putInt(s.family), 0
	case unix.SO_RCVTIMEO, unix.SO_RCVTIMEO_NEW:
		return timeval(timeout(&s.rcvTimeo)), 0
	case unix.SO_SNDTIMEO, unix.SO_SNDTIMEO_NEW:
		return timeval(timeout(&s.sndTimeo)), 0
	case unix.SO_SNDLOWAT:
		return putInt(1), 0
	}
	if s.nl != nil {
		return s.nl.getSocketOpt(name)
	}
	is := s.inet
	ops := is.ep.SocketOptions()
	switch name {
	case unix.SO_ERROR:
		// Linux has one pending error; gVisor may hold the same one as
		// both its hard error and its last error. Reading clears it.
		e := errno(is.ep.LastError())
		if e != 0 {
			is.ep.LastError()
		}
		return putInt(int(e)), 0
	case unix.SO_ACCEPTCONN:
		return putInt(boolInt(is.stream && is.tcpState() == tcp.StateListen)), 0
	case unix.SO_REUSEADDR:
		return putInt(boolInt(ops.GetReuseAddress())), 0
	case unix.SO_REUSEPORT:
		return putInt(boolInt(ops.GetReusePort())), 0
	case unix.SO_KEEPALIVE:
		return putInt(boolInt(ops.GetKeepAlive())), 0
	case unix.SO_BROADCAST:
		return putInt(boolInt(ops.GetBroadcast())), 0
	case unix.SO_NO_CHECK:
		return putInt(boolInt(ops.GetNoChecksum())), 0
	case unix.SO_PASSCRED:
		return putInt(boolInt(ops.GetPassCred())), 0
	case unix.SO_MARK:
		return putInt(int(ops.GetMark())), 0
	case unix.SO_RCVLOWAT:
		return putInt(int(ops.GetRcvlowat())), 0
	case unix.SO_OOBINLINE:
		is.mu.Lock()
		defer is.mu.Unlock()
		return putInt(boolInt(is.oobInline)), 0
	case unix.SO_PRIORITY:
		is.mu.Lock()
		defer is.mu.Unlock()
		return putInt(is.priority), 0
	case unix.SO_RCVBUF:
		return putInt(int(min(ops.GetReceiveBufferSize(), math.MaxInt32))), 0
	case unix.SO_SNDBUF:
		return putInt(int(min(ops.GetSendBufferSize(), math.MaxInt32))), 0
	case unix.SO_LINGER:
		l := ops.GetLinger()
		b := make([]byte, sizeofLinger)
		ne.PutUint32(b, uint32(boolInt(l.Enabled)))
		ne.PutUint32(b[4:], uint32(l.Timeout/time.Second))
		return b, 0
	case unix.SO_BINDTOIFINDEX:
		return putInt(int(ops.GetBindToDevice())), 0
	case unix.SO_BINDTODEVICE:
		id := ops.GetBindToDevice()
		if id == 0 {
			return nil, 0
		}
		if bufLen < ifNameSize {
			return nil, unix.EINVAL
		}
		info, ok := s.ss.st.Gvisor().NICInfo()[tcpip.NICID(id)]
		if !ok {
			return nil, unix.ENODEV
		}
		return append([]byte(info.Name), 0), 0
	}
	return nil, unix.ENOPROTOOPT
}

// bufSize turns an SO_RCVBUF/SO_SNDBUF request into the size Linux keeps:
// capped at the sysctl maximum (unless forced), doubled for overhead,
// at least the endpoint's minimum.
func bufSize(v int, lo, maxv int64, force bool) int64 {
	n := int64(uint32(v))
	if v < 0 {
		n = 0
	}
	if !force && n > maxv {
		n = maxv
	}
	n *= 2
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return max(n, lo)
}

func (s *Socket) setSocketOpt(name int, val []byte) unix.Errno {
	switch name {
	case unix.SO_RCVTIMEO, unix.SO_RCVTIMEO_NEW, unix.SO_SNDTIMEO, unix.SO_SNDTIMEO_NEW:
		d, e := parseTimeval(val)
		if e != 0 {
			return e
		}
		if name == unix.SO_RCVTIMEO || name == unix.SO_RCVTIMEO_NEW {
			s.rcvTimeo.Store(int64(d))
		} else {
			s.sndTimeo.Store(int64(d))
		}
		return 0
	case unix.SO_TYPE, unix.SO_PROTOCOL, unix.SO_DOMAIN, unix.SO_ERROR, unix.SO_ACCEPTCONN, unix.SO_SNDLOWAT:
		return unix.ENOPROTOOPT
	}
	if s.nl != nil {
		return s.nl.setSocketOpt(name, val)
	}
	is := s.inet
	ops := is.ep.SocketOptions()
	if name == unix.SO_BINDTODEVICE {
		// A name, NUL-terminated or not; empty unbinds.
		n := min(len(val), ifNameSize-1)
		dev := string(val[:n])
		if i := bytes.IndexByte(val[:n], 0); i >= 0 {
			dev = string(val[:i])
		}
		if dev == "" {
			return errno(ops.SetBindToDevice(0))
		}
		for id, info := range s.ss.st.Gvisor().NICInfo() {
			if info.Name == dev {
				return errno(ops.SetBindToDevice(int32(id)))
			}
		}
		return unix.ENODEV
	}
	if name == unix.SO_LINGER {
		if len(val) < sizeofLinger {
			return unix.EINVAL
		}
		on, secs := ne.Uint32(val) != 0, int64(int32(ne.Uint32(val[4:])))
		if secs < 0 {
			secs = math.MaxInt32 // Linux reads it unsigned, then caps
		}
		ops.SetLinger(tcpip.LingerOption{Enabled: on, Timeout: time.Duration(secs) * time.Second})
		return 0
	}
	v, e := getInt(val)
	if e != 0 {
		return e
	}
	switch name {
	case unix.SO_REUSEADDR:
		ops.SetReuseAddress(v != 0)
	case unix.SO_REUSEPORT:
		ops.SetReusePort(v != 0)
	case unix.SO_KEEPALIVE:
		ops.SetKeepAlive(v != 0)
	case unix.SO_BROADCAST:
		ops.SetBroadcast(v != 0)
	case unix.SO_NO_CHECK:
		ops.SetNoChecksum(v != 0)
	case unix.SO_PASSCRED:
		ops.SetPassCred(v != 0)
	case unix.SO_MARK:
		ops.SetMark(uint32(v))
	case unix.SO_RCVLOWAT:
		if v < 0 {
			v = math.MaxInt32
		}
		return errno(ops.SetRcvlowat(int32(v)))
	case unix.SO_OOBINLINE:
		is.mu.Lock()
		is.oobInline = v != 0
		is.mu.Unlock()
	case unix.SO_PRIORITY:
		is.mu.Lock()
		is.priority = v
		is.mu.Unlock()
	case unix.SO_RCVBUF, unix.SO_RCVBUFFORCE:
		lo, _ := ops.ReceiveBufferLimits()
		ops.SetReceiveBufferSize(bufSize(v, lo, rmemMax, name == unix.SO_RCVBUFFORCE), true)
	case unix.SO_SNDBUF, unix.SO_SNDBUFFORCE:
		lo, _ := ops.SendBufferLimits()
		ops.SetSendBufferSize(bufSize(v, lo, wmemMax, name == unix.SO_SNDBUFFORCE), true)
	case unix.SO_BINDTOIFINDEX:
		if v != 0 && !s.ss.st.Gvisor().HasNIC(tcpip.NICID(v)) {
			return unix.ENODEV
		}
		return errno(ops.SetBindToDevice(int32(v)))
	default:
		return unix.ENOPROTOOPT
	}
	return 0
}

func (is *inetSock) getTCPOpt(name int) ([]byte, unix.Errno) {
	ops := is.ep.SocketOptions()
	switch name {
	case unix.TCP_NODELAY:
		return putInt(boolInt(!ops.GetDelayOption())), 0
	case unix.TCP_CORK:
		return putInt(boolInt(ops.GetCorkOption())), 0
	case unix.TCP_QUICKACK:
		return putInt(boolInt(ops.GetQuickAck())), 0
	case unix.TCP_KEEPIDLE:
		var o tcpip.KeepaliveIdleOption
		if err := is.ep.GetSockOpt(&o); err != nil {
			return nil, errno(err)
		}
		return putInt(int(time.Duration(o) / time.Second)), 0
	case unix.TCP_KEEPINTVL:
		var o tcpip.KeepaliveIntervalOption
		if err := is.ep.GetSockOpt(&o); err != nil {
			return nil, errno(err)
		}
		return putInt(int(time.Duration(o) / time.Second)), 0
	case unix.TCP_USER_TIMEOUT:
		var o tcpip.TCPUserTimeoutOption
		if err := is.ep.GetSockOpt(&o); err != nil {
			return nil, errno(err)
		}
		return putInt(int(time.Duration(o) / time.Millisecond)), 0
	case unix.TCP_LINGER2:
		var o tcpip.TCPLingerTimeoutOption
		if err := is.ep.GetSockOpt(&o); err != nil {
			return nil, errno(err)
		}
		return putInt(int(time.Duration(o) / time.Second)), 0
	case unix.TCP_DEFER_ACCEPT:
		var o tcpip.TCPDeferAcceptOption
		if err := is.ep.GetSockOpt(&o); err != nil {
			return nil, errno(err)
		}
		return putInt(int(time.Duration(o) / time.Second)), 0
	case unix.TCP_CONGESTION:
		var o tcpip.CongestionControlOption
		if err := is.ep.GetSockOpt(&o); err != nil {
			return nil, errno(err)
		}
		b := make([]byte, 16) // TCP_CA_NAME_MAX
		copy(b, o)
		return b, 0
	}
	var opt tcpip.SockOptInt
	switch name {
	case unix.TCP_KEEPCNT:
		opt = tcpip.KeepaliveCountOption
	case unix.TCP_MAXSEG:
		opt = tcpip.MaxSegOption
	case unix.TCP_SYNCNT:
		opt = tcpip.TCPSynCountOption
	case unix.TCP_WINDOW_CLAMP:
		opt = tcpip.TCPWindowClampOption
	default:
		return nil, unix.ENOPROTOOPT
	}
	v, err := is.ep.GetSockOptInt(opt)
	if err != nil {
		return nil, errno(err)
	}
	return putInt(v), 0
}

func (is *inetSock) setTCPOpt(name int, val []byte) unix.Errno {
	ops := is.ep.SocketOptions()
	if name == unix.TCP_CONGESTION {
		n := min(len(val), 15)
		if i := bytes.IndexByte(val[:n], 0); i >= 0 {
			n = i
		}
		o := tcpip.CongestionControlOption(val[:n])
		if err := is.ep.SetSockOpt(&o); err != nil {
			return unix.ENOENT // Linux: no such algorithm
		}
		return 0
	}
	v, e := getInt(val)
	if e != 0 {
		return e
	}
	secs := func(lo, hi int) (time.Duration, unix.Errno) {
		if v < lo || v > hi {
			return 0, unix.EINVAL
		}
		return time.Duration(v) * time.Second, 0
	}
	switch name {
	case unix.TCP_NODELAY:
		ops.SetDelayOption(v == 0)
	case unix.TCP_CORK:
		ops.SetCorkOption(v != 0)
	case unix.TCP_QUICKACK:
		ops.SetQuickAck(v != 0)
	case unix.TCP_KEEPIDLE:
		d, e := secs(1, maxTCPKeepIdle)
		if e != 0 {
			return e
		}
		o := tcpip.KeepaliveIdleOption(d)
		return errno(is.ep.SetSockOpt(&o))
	case unix.TCP_KEEPINTVL:
		d, e := secs(1, maxTCPKeepIdle)
		if e != 0 {
			return e
		}
		o := tcpip.KeepaliveIntervalOption(d)
		return errno(is.ep.SetSockOpt(&o))
	case unix.TCP_KEEPCNT:
		if v < 1 || v > maxTCPKeepCnt {
			return unix.EINVAL
		}
		return errno(is.ep.SetSockOptInt(tcpip.KeepaliveCountOption, v))
	case unix.TCP_USER_TIMEOUT:
		if v < 0 {
			return unix.EINVAL
		}
		o := tcpip.TCPUserTimeoutOption(time.Duration(v) * time.Millisecond)
		return errno(is.ep.SetSockOpt(&o))
	case unix.TCP_LINGER2:
		o := tcpip.TCPLingerTimeoutOption(time.Duration(max(v, -1)) * time.Second)
		return errno(is.ep.SetSockOpt(&o))
	case unix.TCP_DEFER_ACCEPT:
		o := tcpip.TCPDeferAcceptOption(time.Duration(max(v, 0)) * time.Second)
		return errno(is.ep.SetSockOpt(&o))
	case unix.TCP_MAXSEG:
		if v != 0 && (v < 88 || v > 65535) { // TCP_MIN_MSS, MAX_TCP_WINDOW
			return unix.EINVAL
		}
		return errno(is.ep.SetSockOptInt(tcpip.MaxSegOption, v))
	case unix.TCP_SYNCNT:
		if v < 1 || v > 255 { // MAX_TCP_SYNCNT is 127, gVisor allows 255
			return unix.EINVAL
		}
		return errno(is.ep.SetSockOptInt(tcpip.TCPSynCountOption, v))
	case unix.TCP_WINDOW_CLAMP:
		return errno(is.ep.SetSockOptInt(tcpip.TCPWindowClampOption, v))
	default:
		return unix.ENOPROTOOPT
	}
	return 0
}

func (is *inetSock) getIPOpt(name int) ([]byte, unix.Errno) {
	ops := is.ep.SocketOptions()
	switch name {
	case unix.IP_TTL:
		v, err := is.ep.GetSockOptInt(tcpip.IPv4TTLOption)
		if err != nil {
			return nil, errno(err)
		}
		if v == 0 {
			v = defaultTTL
		}
		return putInt(v), 0
	case unix.IP_TOS:
		v, err := is.ep.GetSockOptInt(tcpip.IPv4TOSOption)
		if err != nil {
			return nil, errno(err)
		}
		return putInt(v), 0
	case unix.IP_MULTICAST_TTL:
		v, err := is.ep.GetSockOptInt(tcpip.MulticastTTLOption)
		if err != nil {
			return nil, errno(err)
		}
		return putInt(v), 0
	case unix.IP_MULTICAST_LOOP:
		return putInt(boolInt(ops.GetMulticastLoop())), 0
	case unix.IP_MULTICAST_IF:
		var o tcpip.MulticastInterfaceOption
		if err := is.ep.GetSockOpt(&o); err != nil {
			return nil, errno(err)
		}
		b := make([]byte, 4)
		if o.InterfaceAddr.Len() == 4 {
			copy(b, o.InterfaceAddr.AsSlice())
		}
		return b, 0
	}
	return nil, unix.ENOPROTOOPT
}

// mreqn decodes the ip_mreqn, ip_mreq or in_addr that IP_MULTICAST_IF and
// IP_ADD_MEMBERSHIP take, as Linux does by length.
func mreqn(val []byte) (group, iface tcpip.Address, ifindex int) {
	var b [sizeofMreqn]byte
	switch {
	case len(val) >= sizeofMreqn:
		copy(b[:], val)
	case len(val) >= sizeofMreq:
		copy(b[:sizeofMreq], val)
	case len(val) >= 4:
		copy(b[4:8], val) // an in_addr is the interface address
	}
	return tcpip.AddrFrom4Slice(b[0:4]), tcpip.AddrFrom4Slice(b[4:8]), int(int32(ne.Uint32(b[8:])))
}

func (is *inetSock) setIPOpt(name int, val []byte) unix.Errno {
	ops := is.ep.SocketOptions()
	switch name {
	case unix.IP_MULTICAST_IF:
		if len(val) < 4 {
			return unix.EINVAL
		}
		_, iface, ifindex := mreqn(val)
		o := tcpip.MulticastInterfaceOption{NIC: tcpip.NICID(ifindex)}
		if !iface.Unspecified() {
			o.InterfaceAddr = iface
		}
		if err := is.ep.SetSockOpt(&o); err != nil {
			if _, ok := err.(*tcpip.ErrBadLocalAddress); ok && ifindex != 0 {
				return unix.ENODEV
			}
			return errno(err)
		}
		return 0
	case unix.IP_ADD_MEMBERSHIP, unix.IP_DROP_MEMBERSHIP:
		if len(val) < sizeofMreq {
			return unix.EINVAL
		}
		group, iface, ifindex := mreqn(val)
		m := tcpip.MembershipOption{NIC: tcpip.NICID(ifindex), MulticastAddr: group}
		if !iface.Unspecified() {
			m.InterfaceAddr = iface
		}
		var err tcpip.Error
		if name == unix.IP_ADD_MEMBERSHIP {
			o := tcpip.AddMembershipOption(m)
			err = is.ep.SetSockOpt(&o)
		} else {
			o := tcpip.RemoveMembershipOption(m)
			err = is.ep.SetSockOpt(&o)
		}
		switch err.(type) {
		case nil:
			return 0
		case *tcpip.ErrPortInUse:
			return unix.EADDRINUSE // joined already
		case *tcpip.ErrBadLocalAddress:
			return unix.EADDRNOTAVAIL // not joined
		default:
			return errno(err)
		}
	}
	v := getIPInt(val)
	switch name {
	case unix.IP_TTL:
		if v == -1 {
			v = 0 // the route's default
		} else if v < 1 || v > 255 {
			return unix.EINVAL
		}
		return errno(is.ep.SetSockOptInt(tcpip.IPv4TTLOption, v))
	case unix.IP_TOS:
		return errno(is.ep.SetSockOptInt(tcpip.IPv4TOSOption, v&0xff))
	case unix.IP_MULTICAST_TTL:
		if v == -1 {
			v = 1
		} else if v < 0 || v > 255 {
			return unix.EINVAL
		}
		return errno(is.ep.SetSockOptInt(tcpip.MulticastTTLOption, v))
	case unix.IP_MULTICAST_LOOP:
		ops.SetMulticastLoop(v != 0)
		return 0
	}
	return unix.ENOPROTOOPT
}

func (is *inetSock) getIPv6Opt(name int) ([]byte, unix.Errno) {
	ops := is.ep.SocketOptions()
	switch name {
	case unix.IPV6_V6ONLY:
		return putInt(boolInt(ops.GetV6Only())), 0
	case unix.IPV6_UNICAST_HOPS:
		v, err := is.ep.GetSockOptInt(tcpip.IPv6HopLimitOption)
		if err != nil {
			return nil, errno(err)
		}
		if v < 0 {
			v = defaultTTL
		}
		return putInt(v), 0
	case unix.IPV6_MULTICAST_HOPS:
		v, err := is.ep.GetSockOptInt(tcpip.MulticastTTLOption)
		if err != nil {
			return nil, errno(err)
		}
		return putInt(v), 0
	case unix.IPV6_MULTICAST_LOOP:
		return putInt(boolInt(ops.GetMulticastLoop())), 0
	case unix.IPV6_MULTICAST_IF:
		v, err := is.ep.GetSockOptInt(tcpip.IPv6MulticastInterfaceOption)
		if err != nil {
			return nil, errno(err)
		}
		return putInt(v), 0
	case unix.IPV6_TCLASS:
		v, err := is.ep.GetSockOptInt(tcpip.IPv6TrafficClassOption)
		if err != nil {
			return nil, errno(err)
		}
		return putInt(v), 0
	}
	return nil, unix.ENOPROTOOPT
}

func (is *inetSock) setIPv6Opt(name int, val []byte) unix.Errno {
	ops := is.ep.SocketOptions()
	if name == unix.IPV6_JOIN_GROUP || name == unix.IPV6_LEAVE_GROUP {
		if len(val) < sizeofMreq6 {
			return unix.EINVAL
		}
		m := tcpip.MembershipOption{
			MulticastAddr: tcpip.AddrFrom16Slice(val[:16]),
			NIC:           tcpip.NICID(int32(ne.Uint32(val[16:20]))),
		}
		var err tcpip.Error
		if name == unix.IPV6_JOIN_GROUP {
			o := tcpip.AddMembershipOption(m)
			err = is.ep.SetSockOpt(&o)
		} else {
			o := tcpip.RemoveMembershipOption(m)
			err = is.ep.SetSockOpt(&o)
		}
		switch err.(type) {
		case nil:
			return 0
		case *tcpip.ErrPortInUse:
			return unix.EADDRINUSE
		case *tcpip.ErrBadLocalAddress:
			return unix.EADDRNOTAVAIL
		default:
			return errno(err)
		}
	}
	v, e := getInt(val)
	if e != 0 {
		return e
	}
	switch name {
	case unix.IPV6_V6ONLY:
		if fa, err := is.ep.GetLocalAddress(); err == nil && fa.Port != 0 {
			return unix.EINVAL // bound already
		}
		ops.SetV6Only(v != 0)
		return 0
	case unix.IPV6_UNICAST_HOPS:
		if v < -1 || v > 255 {
			return unix.EINVAL
		}
		return errno(is.ep.SetSockOptInt(tcpip.IPv6HopLimitOption, v))
	case unix.IPV6_MULTICAST_HOPS:
		if v < -1 || v > 255 {
			return unix.EINVAL
		}
		if v == -1 {
			v = 1
		}
		return errno(is.ep.SetSockOptInt(tcpip.MulticastTTLOption, v))
	case unix.IPV6_MULTICAST_LOOP:
		if v != 0 && v != 1 {
			return unix.EINVAL
		}
		ops.SetMulticastLoop(v != 0)
		return 0
	case unix.IPV6_MULTICAST_IF:
		if v != 0 && !is.s.ss.st.Gvisor().HasNIC(tcpip.NICID(v)) {
			return unix.ENODEV
		}
		return errno(is.ep.SetSockOptInt(tcpip.IPv6MulticastInterfaceOption, v))
	case unix.IPV6_TCLASS:
		if v < -1 || v > 255 {
			return unix.EINVAL
		}
		return errno(is.ep.SetSockOptInt(tcpip.IPv6TrafficClassOption, max(v, 0)))
	}
	return unix.ENOPROTOOPT
}

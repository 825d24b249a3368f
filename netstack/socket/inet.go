package socket

import (
	"context"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// somaxconn is Linux's net.core.somaxconn, the cap on listen backlogs.
const somaxconn = 4096

// allEvents is what the socket listens for on its gVisor wait queue.
const allEvents = waiter.ReadableEvents | waiter.WritableEvents | waiter.EventPri | waiter.EventErr | waiter.EventHUp | waiter.EventRdHUp

// inetSock is an AF_INET or AF_INET6 socket over a gVisor endpoint.
type inetSock struct {
	s      *Socket
	ep     tcpip.Endpoint
	wq     *waiter.Queue
	entry  waiter.Entry
	stream bool

	// Options Linux keeps that gVisor has no use for.
	mu        sync.Mutex
	priority  int  // +checklocks:mu; SO_PRIORITY
	oobInline bool // +checklocks:mu; SO_OOBINLINE
}

func newInet(ss *Sockets, s *Socket, domain, typ, proto int) (*inetSock, int, unix.Errno) {
	netProto := ipv4.ProtocolNumber
	icmpProto, ping := unix.IPPROTO_ICMP, icmp.ProtocolNumber4
	if domain == unix.AF_INET6 {
		netProto = ipv6.ProtocolNumber
		icmpProto, ping = unix.IPPROTO_ICMPV6, icmp.ProtocolNumber6
	}
	var tp tcpip.TransportProtocolNumber
	switch typ {
	case unix.SOCK_STREAM:
		if proto != 0 && proto != unix.IPPROTO_TCP {
			return nil, 0, unix.EPROTONOSUPPORT
		}
		tp, proto = tcp.ProtocolNumber, unix.IPPROTO_TCP
	case unix.SOCK_DGRAM:
		switch proto {
		case 0, unix.IPPROTO_UDP:
			tp, proto = udp.ProtocolNumber, unix.IPPROTO_UDP
		case icmpProto:
			tp = ping
		default:
			return nil, 0, unix.EPROTONOSUPPORT
		}
	case unix.SOCK_RAW:
		// What an unprivileged Linux process gets; programs take it
		// as "no raw sockets here" and fall back (to ping sockets).
		return nil, 0, unix.EPERM
	default:
		return nil, 0, unix.ESOCKTNOSUPPORT
	}
	wq := new(waiter.Queue)
	ep, err := ss.st.Gvisor().NewEndpoint(tp, netProto, wq)
	if err != nil {
		return nil, 0, errno(err)
	}
	return wrapInet(s, ep, wq), proto, 0
}

// wrapInet makes ep the endpoint of s and listens to its wait queue.
func wrapInet(s *Socket, ep tcpip.Endpoint, wq *waiter.Queue) *inetSock {
	is := &inetSock{s: s, ep: ep, wq: wq, stream: s.stype == unix.SOCK_STREAM}
	is.entry = waiter.NewFunctionEntry(allEvents, func(waiter.EventMask) { s.changed() })
	wq.EventRegister(&is.entry)
	return is
}

func (is *inetSock) v6() bool { return is.s.family == unix.AF_INET6 }

// tcpState is the TCP state of a stream socket.
func (is *inetSock) tcpState() tcp.EndpointState { return tcp.EndpointState(is.ep.State()) }

// bindAddr validates a bind(2) address as Linux's inet_bind and
// inet6_bind do.
func (is *inetSock) bindAddr(sa []byte) (tcpip.FullAddress, unix.Errno) {
	if !is.v6() {
		if len(sa) < sizeofSockaddrIn {
			return tcpip.FullAddress{}, unix.EINVAL
		}
		fa := parseIn(sa)
		if f := saFamily(sa); f != unix.AF_INET {
			// AF_UNSPEC passes for INADDR_ANY, for old programs.
			if f != unix.AF_UNSPEC || !fa.Addr.Unspecified() {
				return tcpip.FullAddress{}, unix.EAFNOSUPPORT
			}
		}
		return fa, 0
	}
	if len(sa) < sin6LenRFC2133 {
		return tcpip.FullAddress{}, unix.EINVAL
	}
	if saFamily(sa) != unix.AF_INET6 {
		return tcpip.FullAddress{}, unix.EAFNOSUPPORT
	}
	fa := parseIn6(sa)
	if isV4Mapped(fa.Addr) && is.ep.SocketOptions().GetV6Only() {
		return tcpip.FullAddress{}, unix.EINVAL
	}
	if isLinkLocal6(fa.Addr) && fa.NIC == 0 && is.ep.SocketOptions().GetBindToDevice() == 0 {
		// A link-local address needs an interface.
		return tcpip.FullAddress{}, unix.EINVAL
	}
	return fa, 0
}

func isV4Mapped(a tcpip.Address) bool {
	if a.Len() != 16 {
		return false
	}
	b := a.As16()
	for _, x := range b[:10] {
		if x != 0 {
			return false
		}
	}
	return b[10] == 0xff && b[11] == 0xff
}

func (is *inetSock) bind(sa []byte) unix.Errno {
	fa, e := is.bindAddr(sa)
	if e != 0 {
		return e
	}
	switch err := is.ep.Bind(fa).(type) {
	case nil:
		return 0
	case *tcpip.ErrAlreadyBound, *tcpip.ErrInvalidEndpointState:
		// Bound already, or connected: Linux's inet_bind says EINVAL.
		return unix.EINVAL
	default:
		return errno(err)
	}
}

// peerAddr validates the address of connect(2) (send is false) or of
// sendto(2)/sendmsg(2) (send is true) as Linux does for the socket's
// family and type. unspec reports AF_UNSPEC where Linux reads it as "no
// address" (disconnect, or the connected peer).
func (is *inetSock) peerAddr(sa []byte, send bool) (fa tcpip.FullAddress, unspec bool, e unix.Errno) {
	f := saFamily(sa)
	if f < 0 {
		return fa, false, unix.EINVAL
	}
	if !is.v6() {
		if f == unix.AF_UNSPEC && !send {
			return fa, true, 0
		}
		if len(sa) < sizeofSockaddrIn {
			return fa, false, unix.EINVAL
		}
		// udp_sendmsg takes AF_UNSPEC as AF_INET.
		if f != unix.AF_INET && !(f == unix.AF_UNSPEC && !is.stream && is.s.protocol == unix.IPPROTO_UDP) {
			return fa, false, unix.EAFNOSUPPORT
		}
		return parseIn(sa), false, 0
	}
	switch {
	case f == unix.AF_UNSPEC && (!send || !is.stream):
		return fa, true, 0
	case f == unix.AF_INET && !is.stream:
		// A datagram socket of AF_INET6 takes IPv4 peers, mapped.
		if is.ep.SocketOptions().GetV6Only() {
			if send {
				return fa, false, unix.ENETUNREACH
			}
			return fa, false, unix.EAFNOSUPPORT
		}
		if len(sa) < sizeofSockaddrIn {
			return fa, false, unix.EINVAL
		}
		fa = parseIn(sa)
		fa.Addr = v4Mapped(fa.Addr)
		return fa, false, 0
	}
	if len(sa) < sin6LenRFC2133 {
		return fa, false, unix.EINVAL
	}
	if f != unix.AF_INET6 {
		if send {
			return fa, false, unix.EINVAL
		}
		return fa, false, unix.EAFNOSUPPORT
	}
	fa = parseIn6(sa)
	if isV4Mapped(fa.Addr) && is.ep.SocketOptions().GetV6Only() {
		if send {
			return fa, false, unix.ENETUNREACH
		}
		return fa, false, unix.EAFNOSUPPORT
	}
	if !send && is.stream && isLinkLocal6(fa.Addr) && fa.NIC == 0 && is.ep.SocketOptions().GetBindToDevice() == 0 {
		return fa, false, unix.EINVAL
	}
	return fa, false, 0
}

func (is *inetSock) connect(ctx context.Context, sa []byte) unix.Errno {
	fa, unspec, e := is.peerAddr(sa, false)
	if e != 0 {
		return e
	}
	if unspec {
		return errno(is.ep.Disconnect())
	}
	if !is.stream {
		return errno(is.ep.Connect(fa))
	}
	if is.tcpState() == tcp.StateListen {
		return unix.EISCONN
	}
	err := is.ep.Connect(fa)
	if _, ok := err.(*tcpip.ErrConnectStarted); !ok {
		return errno(err)
	}
	if is.s.nonblock.Load() {
		return unix.EINPROGRESS
	}
	// Connect again once something happens: gVisor answers
	// ErrAlreadyConnecting while the handshake runs, then nil once, or
	// the error that ended it.
	e = is.s.block(ctx, false, timeout(&is.s.sndTimeo), func() unix.Errno {
		switch err := is.ep.Connect(fa).(type) {
		case *tcpip.ErrAlreadyConnecting:
			return unix.EAGAIN
		default:
			return errno(err)
		}
	}, nil)
	switch e {
	case unix.EAGAIN:
		// SO_SNDTIMEO ran out: Linux leaves the handshake going.
		return unix.EINPROGRESS
	case 0, unix.EINTR, unix.EBADF:
	default:
		// connect reported the error: Linux's SO_ERROR is clear now,
		// gVisor may still hold a copy.
		is.ep.LastError()
	}
	return e
}

func (is *inetSock) listen(backlog int) unix.Errno {
	if !is.stream {
		return unix.EOPNOTSUPP
	}
	if backlog < 0 || backlog > somaxconn {
		backlog = somaxconn
	}
	return errno(is.ep.Listen(backlog))
}

func (is *inetSock) accept(ctx context.Context, flags int) (*Socket, []byte, unix.Errno) {
	if !is.stream {
		return nil, nil, unix.EOPNOTSUPP
	}
	var (
		nep  tcpip.Endpoint
		nwq  *waiter.Queue
		peer tcpip.FullAddress
	)
	e := is.s.block(ctx, is.s.nonblock.Load(), timeout(&is.s.rcvTimeo), func() unix.Errno {
		var err tcpip.Error
		nep, nwq, err = is.ep.Accept(&peer)
		return errno(err)
	}, nil)
	if e != 0 {
		return nil, nil, e
	}
	ns := newSocket(is.s.ss, is.s.family, is.s.stype, flags)
	ns.protocol = is.s.protocol
	ns.inet = wrapInet(ns, nep, nwq)
	return ns, encodeInet(is.s.family, peer), 0
}

// cloneIOV copies the outer slice of iov, which the I/O helpers advance.
func cloneIOV(iov [][]byte) [][]byte { return append([][]byte(nil), iov...) }

// discardWriter swallows up to n bytes: a stream read with MSG_TRUNC.
type discardWriter struct{ n int }

func (w *discardWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, io.ErrShortWrite
	}
	w.n -= len(p)
	return len(p), nil
}

func (is *inetSock) recv(ctx context.Context, iov [][]byte, flags int) (int, []byte, int, unix.Errno) {
	if flags&unix.MSG_ERRQUEUE != 0 {
		return 0, nil, 0, unix.EAGAIN // no error queue
	}
	if flags&unix.MSG_OOB != 0 {
		if is.stream {
			return 0, nil, 0, unix.EINVAL // no urgent data, ever
		}
		return 0, nil, 0, unix.EOPNOTSUPP
	}
	nonblock := is.s.nonblock.Load() || flags&unix.MSG_DONTWAIT != 0
	if is.stream {
		n, e := is.recvStream(ctx, iov, flags, nonblock)
		return n, nil, 0, e
	}
	return is.recvDgram(ctx, iov, flags, nonblock)
}

func (is *inetSock) recvStream(ctx context.Context, iov [][]byte, flags int, nonblock bool) (int, unix.Errno) {
	peek := flags&unix.MSG_PEEK != 0
	trunc := flags&unix.MSG_TRUNC != 0
	waitAll := flags&unix.MSG_WAITALL != 0 && !peek
	total := IOVLen(iov)
	if is.tcpState() == tcp.StateListen {
		return 0, unix.ENOTCONN
	}
	if total == 0 {
		// Nothing to copy: report only a socket that was never
		// connected, as Linux does.
		if _, err := is.ep.Read(io.Discard, tcpip.ReadOptions{Peek: true}); err != nil {
			if _, ok := err.(*tcpip.ErrNotConnected); ok {
				return 0, unix.ENOTCONN
			}
		}
		return 0, 0
	}
	got := 0
	w := &iovWriter{iov: cloneIOV(iov)}
	e := is.s.block(ctx, nonblock, timeout(&is.s.rcvTimeo), func() unix.Errno {
		for {
			var dst io.Writer = w
			if trunc {
				dst = &discardWriter{n: total - got}
			}
			if peek {
				// A peek starts from the front each time.
				got = 0
				w = &iovWriter{iov: cloneIOV(iov)}
				dst = w
				if trunc {
					dst = &discardWriter{n: total}
				}
			}
			res, err := is.ep.Read(dst, tcpip.ReadOptions{Peek: peek})
			switch err.(type) {
			case nil:
				got += res.Count
				if !peek && res.Count > 0 {
					is.ep.ModerateRecvBuf(res.Count)
				}
				if waitAll && got < total {
					continue
				}
				return 0
			case *tcpip.ErrClosedForReceive:
				return 0 // end of file, after whatever came before
			case *tcpip.ErrWouldBlock:
				if got > 0 && !waitAll {
					return 0
				}
				return unix.EAGAIN
			default:
				if got > 0 {
					return 0 // the error waits for the next read
				}
				return errno(err)
			}
		}
	}, func() bool { return got > 0 })
	if got > 0 {
		return got, 0
	}
	return 0, e
}

func (is *inetSock) recvDgram(ctx context.Context, iov [][]byte, flags int, nonblock bool) (int, []byte, int, unix.Errno) {
	peek := flags&unix.MSG_PEEK != 0
	total := IOVLen(iov)
	var (
		n, mflags int
		from      []byte
	)
	e := is.s.block(ctx, nonblock, timeout(&is.s.rcvTimeo), func() unix.Errno {
		w := &iovWriter{iov: cloneIOV(iov)}
		res, err := is.ep.Read(w, tcpip.ReadOptions{Peek: peek, NeedRemoteAddr: true})
		if _, ok := err.(*tcpip.ErrBadBuffer); ok && total == 0 {
			err = nil // a zero-length read takes the datagram
		}
		switch err.(type) {
		case nil:
			n = res.Count
			if res.Total > res.Count {
				mflags |= unix.MSG_TRUNC
				if flags&unix.MSG_TRUNC != 0 {
					n = res.Total
				}
			}
			from = encodeInet(is.s.family, res.RemoteAddr)
			return 0
		case *tcpip.ErrClosedForReceive:
			return 0 // shut down for reading: end of file
		default:
			return errno(err)
		}
	}, nil)
	if e != 0 {
		return 0, nil, 0, e
	}
	return n, from, mflags, 0
}

func (is *inetSock) send(ctx context.Context, iov [][]byte, to []byte, flags int) (int, unix.Errno) {
	nonblock := is.s.nonblock.Load() || flags&unix.MSG_DONTWAIT != 0
	if flags&unix.MSG_OOB != 0 {
		return 0, unix.EOPNOTSUPP
	}
	tmo := timeout(&is.s.sndTimeo)
	if is.stream {
		// Linux ignores the address of a TCP send (no fast open here).
		r := newIOVReader(cloneIOV(iov))
		sent := 0
		e := is.s.block(ctx, nonblock, tmo, func() unix.Errno {
			for {
				n, err := is.ep.Write(r, tcpip.WriteOptions{More: flags&unix.MSG_MORE != 0})
				sent += int(n)
				switch err.(type) {
				case nil:
					if r.Len() == 0 || nonblock {
						return 0
					}
				case *tcpip.ErrWouldBlock:
					if sent > 0 && nonblock {
						return 0
					}
					return unix.EAGAIN
				default:
					if sent > 0 {
						return 0 // the error waits for the next write
					}
					return errno(err)
				}
			}
		}, func() bool { return sent > 0 })
		if sent > 0 {
			return sent, 0
		}
		return 0, e
	}
	var opts tcpip.WriteOptions
	if len(to) > 0 {
		fa, unspec, e := is.peerAddr(to, true)
		if e != 0 {
			return 0, e
		}
		if !unspec {
			opts.To = &fa
		}
	}
	var n int64
	e := is.s.block(ctx, nonblock, tmo, func() unix.Errno {
		var err tcpip.Error
		n, err = is.ep.Write(newIOVReader(cloneIOV(iov)), opts)
		return errno(err)
	}, nil)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func (is *inetSock) sockname() ([]byte, unix.Errno) {
	fa, err := is.ep.GetLocalAddress()
	if err != nil {
		return nil, errno(err)
	}
	return encodeInet(is.s.family, fa), 0
}

func (is *inetSock) peername() ([]byte, unix.Errno) {
	fa, err := is.ep.GetRemoteAddress()
	if err != nil {
		return nil, errno(err)
	}
	return encodeInet(is.s.family, fa), 0
}

func (is *inetSock) shutdown(how int) unix.Errno {
	var f tcpip.ShutdownFlags
	switch how {
	case unix.SHUT_RD:
		f = tcpip.ShutdownRead
	case unix.SHUT_WR:
		f = tcpip.ShutdownWrite
	case unix.SHUT_RDWR:
		f = tcpip.ShutdownRead | tcpip.ShutdownWrite
	default:
		return unix.EINVAL
	}
	return errno(is.ep.Shutdown(f))
}

func (is *inetSock) events() uint32 {
	r := is.ep.Readiness(allEvents)
	if is.stream {
		switch is.tcpState() {
		case tcp.StateInitial, tcp.StateBound:
			// Linux's tcp_poll: a closed socket is writable (and hung
			// up), so that a poll on it returns at once.
			r |= waiter.WritableEvents | waiter.EventHUp
		}
	}
	return uint32(r)
}

// eventsExact is Socket.EventsExact for an inet socket.
func (is *inetSock) eventsExact() bool {
	if !is.stream {
		return true
	}
	switch is.tcpState() {
	case tcp.StateSynSent, tcp.StateSynRecv, tcp.StateEstablished:
		// gVisor keeps SO_RCVLOWAT but acts on none: readiness and
		// reads both behave as with 1, so the option changes nothing.
		return true
	}
	return false
}

func (is *inetSock) inq() (int, unix.Errno) {
	if is.stream && is.tcpState() == tcp.StateListen {
		return 0, unix.EINVAL
	}
	v, err := is.ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
	return v, errno(err)
}

func (is *inetSock) outq() (int, unix.Errno) {
	if is.stream && is.tcpState() == tcp.StateListen {
		return 0, unix.EINVAL
	}
	v, err := is.ep.GetSockOptInt(tcpip.SendQueueSizeOption)
	if err != nil {
		return 0, 0 // datagram endpoints keep no send queue
	}
	return v, 0
}

// resetOnClose makes a connected TCP endpoint's close send a reset: gVisor
// does so for SO_LINGER on with a zero time.
func (is *inetSock) resetOnClose() {
	if is.stream {
		is.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true})
	}
}

// close closes the endpoint. With SO_LINGER on and a time, a TCP socket
// waits until its FIN is acknowledged (no longer FIN-WAIT-1, CLOSING or
// LAST-ACK) or the time is up; a zero time makes gVisor reset the
// connection instead.
func (is *inetSock) close(ctx context.Context) {
	is.wq.EventUnregister(&is.entry)
	l := is.ep.SocketOptions().GetLinger()
	if !is.stream || !l.Enabled || l.Timeout <= 0 {
		is.ep.Close()
		return
	}
	e, ch := waiter.NewChannelEntry(allEvents)
	is.wq.EventRegister(&e)
	defer is.wq.EventUnregister(&e)
	is.ep.Close()
	t := time.NewTimer(l.Timeout)
	defer t.Stop()
	// gVisor does not notify the acknowledgement of a FIN, so the state
	// is also polled.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		switch is.tcpState() {
		case tcp.StateFinWait1, tcp.StateClosing, tcp.StateLastAck:
		default:
			return
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

package socket

import (
	"context"
	"sync"

	"golang.org/x/sys/unix"
)

// Netlink limits, from Linux.
const (
	// dumpSize is how much of a dump one datagram carries: Linux's
	// NLMSG_GOODSIZE on 4 KiB pages (a page less the skb overhead), so
	// that a reader with a page-sized buffer (Go's syscall.NetlinkRIB)
	// gets whole datagrams.
	dumpSize = 3776
	// nlDefaultBuf is net.core.rmem_default and wmem_default, a netlink
	// socket's SO_RCVBUF and SO_SNDBUF.
	nlDefaultBuf = 212992
	// rtnlgrpMax is the last NETLINK_ROUTE multicast group (RTNLGRP_MAX
	// of recent kernels).
	rtnlgrpMax = 36
)

// netlinkSock is an AF_NETLINK socket of protocol NETLINK_ROUTE. The
// "kernel" it talks to is this package: requests are answered when they
// are sent, and the answers wait in the receive queue as datagrams.
type netlinkSock struct {
	s *Socket

	mu        sync.Mutex
	port      uint32     // +checklocks:mu; 0 until bound
	groups    uint32     // +checklocks:mu; multicast groups 1-32 (never sent to)
	dstPort   uint32     // +checklocks:mu; connect's peer
	dstGroups uint32     // +checklocks:mu
	queue     []nlDgram  // +checklocks:mu
	queued    int        // +checklocks:mu; bytes in queue
	err       unix.Errno // +checklocks:mu; pending error (ENOBUFS)
	rcvbuf    int        // +checklocks:mu
	sndbuf    int        // +checklocks:mu
	passcred  bool       // +checklocks:mu
	capAck    bool       // +checklocks:mu; NETLINK_CAP_ACK
	extAck    bool       // +checklocks:mu; NETLINK_EXT_ACK
	strict    bool       // +checklocks:mu; NETLINK_GET_STRICT_CHK
	noENOBUFS bool       // +checklocks:mu; NETLINK_NO_ENOBUFS
	pktinfo   bool       // +checklocks:mu; NETLINK_PKTINFO
	bcastErr  bool       // +checklocks:mu; NETLINK_BROADCAST_ERROR
}

// nlDgram is one queued datagram.
type nlDgram struct {
	b    []byte
	from uint32 // sender's port id; 0 is the kernel
	dump bool   // part of a dump still being read
}

func newNetlink(ss *Sockets, s *Socket) *netlinkSock {
	return &netlinkSock{s: s, rcvbuf: nlDefaultBuf, sndbuf: nlDefaultBuf}
}

// autobindLocked gives the socket a port id if it has none: the process
// id if free, else the next negative number, as Linux's netlink_autobind.
//
// +checklocks:nl.mu
func (nl *netlinkSock) autobindLocked() {
	if nl.port != 0 {
		return
	}
	ss := nl.s.ss
	ss.nlMu.Lock()
	defer ss.nlMu.Unlock()
	port := ss.pid
	for port == 0 || ss.nlPorts[port] != nil {
		port = uint32(ss.nlNext)
		ss.nlNext--
		if ss.nlNext > -4096 { // wrapped
			ss.nlNext = -4096
		}
	}
	ss.nlPorts[port] = nl
	nl.port = port
}

func (nl *netlinkSock) bind(sa []byte) unix.Errno {
	if len(sa) < sizeofSockaddrNl || saFamily(sa) != unix.AF_NETLINK {
		return unix.EINVAL
	}
	pid, groups := ne.Uint32(sa[4:]), ne.Uint32(sa[8:])
	nl.mu.Lock()
	defer nl.mu.Unlock()
	if nl.port != 0 {
		if pid != nl.port {
			return unix.EINVAL
		}
	} else if pid == 0 {
		nl.autobindLocked()
	} else {
		ss := nl.s.ss
		ss.nlMu.Lock()
		if ss.nlPorts[pid] != nil {
			ss.nlMu.Unlock()
			return unix.EADDRINUSE
		}
		ss.nlPorts[pid] = nl
		ss.nlMu.Unlock()
		nl.port = pid
	}
	nl.groups = groups
	return 0
}

func (nl *netlinkSock) connect(sa []byte) unix.Errno {
	f := saFamily(sa)
	if f < 0 {
		return unix.EINVAL
	}
	nl.mu.Lock()
	defer nl.mu.Unlock()
	if f == unix.AF_UNSPEC {
		nl.dstPort, nl.dstGroups = 0, 0
		return 0
	}
	if f != unix.AF_NETLINK || len(sa) < sizeofSockaddrNl {
		return unix.EINVAL
	}
	nl.autobindLocked()
	nl.dstPort, nl.dstGroups = ne.Uint32(sa[4:]), ne.Uint32(sa[8:])
	return 0
}

func (nl *netlinkSock) sockname() []byte {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	return encodeNetlink(nl.port, nl.groups)
}

func (nl *netlinkSock) peername() []byte {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	return encodeNetlink(nl.dstPort, nl.dstGroups)
}

func (nl *netlinkSock) send(iov [][]byte, to []byte) (int, unix.Errno) {
	nl.mu.Lock()
	dst := nl.dstPort
	if len(to) > 0 {
		if len(to) < sizeofSockaddrNl || saFamily(to) != unix.AF_NETLINK {
			nl.mu.Unlock()
			return 0, unix.EINVAL
		}
		dst = ne.Uint32(to[4:])
	}
	nl.autobindLocked()
	port, sndbuf := nl.port, nl.sndbuf
	nl.mu.Unlock()
	n := IOVLen(iov)
	if n > sndbuf-32 {
		return 0, unix.EMSGSIZE
	}
	msg := make([]byte, 0, n)
	for _, b := range iov {
		msg = append(msg, b...)
	}
	if dst != 0 {
		// To another netlink socket of the program.
		ss := nl.s.ss
		ss.nlMu.Lock()
		peer := ss.nlPorts[dst]
		ss.nlMu.Unlock()
		if peer == nil {
			return 0, unix.ECONNREFUSED
		}
		if !peer.deliver(nlDgram{b: msg, from: port}) {
			return 0, unix.EAGAIN
		}
		return n, 0
	}
	nl.request(msg, port)
	return n, 0
}

// deliver queues a datagram unless the receive buffer is full. A reply
// of the kernel that does not fit is dropped and the socket's error
// becomes ENOBUFS; one from another socket is refused (the sender gets
// EAGAIN). Dumps are always queued: Linux produces them as they are read.
func (nl *netlinkSock) deliver(d nlDgram) bool {
	nl.mu.Lock()
	ok := d.dump || nl.queued+len(d.b) <= nl.rcvbuf
	if ok {
		nl.queue = append(nl.queue, d)
		nl.queued += len(d.b)
	} else if d.from == 0 && !nl.noENOBUFS {
		nl.err = unix.ENOBUFS
	}
	nl.mu.Unlock()
	nl.s.changed()
	return ok
}

func (nl *netlinkSock) dumping() bool {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	for _, d := range nl.queue {
		if d.dump {
			return true
		}
	}
	return false
}

func (nl *netlinkSock) recv(ctx context.Context, iov [][]byte, flags int) (int, []byte, int, unix.Errno) {
	if flags&unix.MSG_ERRQUEUE != 0 {
		return 0, nil, 0, unix.EAGAIN
	}
	if flags&unix.MSG_OOB != 0 {
		return 0, nil, 0, unix.EOPNOTSUPP
	}
	nonblock := nl.s.nonblock.Load() || flags&unix.MSG_DONTWAIT != 0
	var (
		n, mflags int
		from      []byte
	)
	e := nl.s.block(ctx, nonblock, timeout(&nl.s.rcvTimeo), func() unix.Errno {
		nl.mu.Lock()
		defer nl.mu.Unlock()
		if nl.err != 0 {
			e := nl.err
			nl.err = 0
			return e
		}
		if len(nl.queue) == 0 {
			return unix.EAGAIN
		}
		d := nl.queue[0]
		w := &iovWriter{iov: cloneIOV(iov)}
		w.Write(d.b)
		n = w.n
		if len(d.b) > n {
			mflags |= unix.MSG_TRUNC
			if flags&unix.MSG_TRUNC != 0 {
				n = len(d.b)
			}
		}
		from = encodeNetlink(d.from, 0)
		if flags&unix.MSG_PEEK == 0 {
			nl.queue[0] = nlDgram{}
			nl.queue = nl.queue[1:]
			nl.queued -= len(d.b)
		}
		return 0
	}, nil)
	if e != 0 {
		return 0, nil, 0, e
	}
	if flags&unix.MSG_PEEK == 0 {
		nl.s.changed()
	}
	return n, from, mflags, 0
}

func (nl *netlinkSock) inq() int {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	if len(nl.queue) == 0 {
		return 0
	}
	return len(nl.queue[0].b)
}

func (nl *netlinkSock) events() uint32 {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	ev := uint32(unix.EPOLLOUT | unix.EPOLLWRNORM)
	if len(nl.queue) > 0 {
		ev |= unix.EPOLLIN | unix.EPOLLRDNORM
	}
	if nl.err != 0 {
		ev |= unix.EPOLLERR
	}
	return ev
}

func (nl *netlinkSock) close() {
	nl.mu.Lock()
	port := nl.port
	nl.queue, nl.queued = nil, 0
	nl.mu.Unlock()
	if port != 0 {
		ss := nl.s.ss
		ss.nlMu.Lock()
		if ss.nlPorts[port] == nl {
			delete(ss.nlPorts, port)
		}
		ss.nlMu.Unlock()
	}
}

func (nl *netlinkSock) getSocketOpt(name int) ([]byte, unix.Errno) {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	switch name {
	case unix.SO_ERROR:
		e := nl.err
		nl.err = 0
		return putInt(int(e)), 0
	case unix.SO_RCVBUF:
		return putInt(nl.rcvbuf), 0
	case unix.SO_SNDBUF:
		return putInt(nl.sndbuf), 0
	case unix.SO_PASSCRED:
		return putInt(boolInt(nl.passcred)), 0
	case unix.SO_ACCEPTCONN:
		return putInt(0), 0
	}
	return nil, unix.ENOPROTOOPT
}

func (nl *netlinkSock) setSocketOpt(name int, val []byte) unix.Errno {
	v, e := getInt(val)
	if e != 0 {
		return e
	}
	nl.mu.Lock()
	defer nl.mu.Unlock()
	switch name {
	case unix.SO_RCVBUF, unix.SO_RCVBUFFORCE:
		nl.rcvbuf = int(bufSize(v, 2304, rmemMax, name == unix.SO_RCVBUFFORCE))
	case unix.SO_SNDBUF, unix.SO_SNDBUFFORCE:
		nl.sndbuf = int(bufSize(v, 4608, wmemMax, name == unix.SO_SNDBUFFORCE))
	case unix.SO_PASSCRED:
		nl.passcred = v != 0
	default:
		return unix.ENOPROTOOPT
	}
	return 0
}

func (nl *netlinkSock) getsockopt(level, name int) ([]byte, unix.Errno) {
	if level != unix.SOL_NETLINK {
		return nil, unix.ENOPROTOOPT
	}
	nl.mu.Lock()
	defer nl.mu.Unlock()
	var v bool
	switch name {
	case unix.NETLINK_CAP_ACK:
		v = nl.capAck
	case unix.NETLINK_EXT_ACK:
		v = nl.extAck
	case unix.NETLINK_GET_STRICT_CHK:
		v = nl.strict
	case unix.NETLINK_NO_ENOBUFS:
		v = nl.noENOBUFS
	case unix.NETLINK_PKTINFO:
		v = nl.pktinfo
	case unix.NETLINK_BROADCAST_ERROR:
		v = nl.bcastErr
	case unix.NETLINK_LIST_MEMBERSHIPS:
		return putInt(int(nl.groups)), 0
	default:
		return nil, unix.ENOPROTOOPT
	}
	return putInt(boolInt(v)), 0
}

func (nl *netlinkSock) setsockopt(level, name int, val []byte) unix.Errno {
	if level != unix.SOL_NETLINK {
		return unix.ENOPROTOOPT
	}
	v := 0
	if len(val) >= 4 {
		v = int(int32(ne.Uint32(val)))
	}
	nl.mu.Lock()
	defer nl.mu.Unlock()
	switch name {
	case unix.NETLINK_ADD_MEMBERSHIP, unix.NETLINK_DROP_MEMBERSHIP:
		if v <= 0 || v > rtnlgrpMax {
			return unix.EINVAL
		}
		if v <= 32 {
			bit := uint32(1) << (v - 1)
			if name == unix.NETLINK_ADD_MEMBERSHIP {
				nl.groups |= bit
			} else {
				nl.groups &^= bit
			}
		}
	case unix.NETLINK_CAP_ACK:
		nl.capAck = v != 0
	case unix.NETLINK_EXT_ACK:
		nl.extAck = v != 0
	case unix.NETLINK_GET_STRICT_CHK:
		nl.strict = v != 0
	case unix.NETLINK_NO_ENOBUFS:
		nl.noENOBUFS = v != 0
		if v != 0 {
			nl.err = 0
		}
	case unix.NETLINK_PKTINFO:
		nl.pktinfo = v != 0
	case unix.NETLINK_BROADCAST_ERROR:
		nl.bcastErr = v != 0
	default:
		return unix.ENOPROTOOPT
	}
	return 0
}

package socket

import (
	"context"

	"golang.org/x/sys/unix"
)

// Bind is bind(2): sa is the program's sockaddr, of the length it gave.
func (s *Socket) Bind(sa []byte) unix.Errno {
	if s.isClosed() {
		return unix.EBADF
	}
	if s.nl != nil {
		return s.nl.bind(sa)
	}
	return s.inet.bind(sa)
}

// Connect is connect(2). A non-blocking TCP socket answers EINPROGRESS
// and reports the outcome through Events (EPOLLOUT) and SO_ERROR; a
// blocking one waits, up to SO_SNDTIMEO (then EINPROGRESS, as Linux).
// AF_UNSPEC dissolves a datagram socket's association.
func (s *Socket) Connect(ctx context.Context, sa []byte) unix.Errno {
	if s.isClosed() {
		return unix.EBADF
	}
	if s.nl != nil {
		return s.nl.connect(sa)
	}
	return s.inet.connect(ctx, sa)
}

// Listen is listen(2); the backlog is capped at 4096 (somaxconn).
func (s *Socket) Listen(backlog int) unix.Errno {
	if s.isClosed() {
		return unix.EBADF
	}
	if s.nl != nil {
		return unix.EOPNOTSUPP
	}
	return s.inet.listen(backlog)
}

// Accept is accept4(2): flags may hold SOCK_NONBLOCK and SOCK_CLOEXEC for
// the new socket. It returns the new socket and its peer's sockaddr.
func (s *Socket) Accept(ctx context.Context, flags int) (*Socket, []byte, unix.Errno) {
	if s.isClosed() {
		return nil, nil, unix.EBADF
	}
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		return nil, nil, unix.EINVAL
	}
	if s.nl != nil {
		return nil, nil, unix.EOPNOTSUPP
	}
	return s.inet.accept(ctx, flags)
}

// Read is read(2) on the socket: RecvMsg without flags or address.
func (s *Socket) Read(ctx context.Context, p []byte) (int, unix.Errno) {
	n, _, _, e := s.RecvMsg(ctx, [][]byte{p}, 0)
	return n, e
}

// Write is write(2) on the socket: SendMsg without flags or address.
func (s *Socket) Write(ctx context.Context, p []byte) (int, unix.Errno) {
	return s.SendMsg(ctx, [][]byte{p}, nil, 0)
}

// RecvMsg is recvmsg(2) (and recvfrom(2), read(2)): it fills iov and
// returns the byte count, the sender's sockaddr (datagram and netlink
// sockets; nil for streams, whose peer getpeername tells) and the
// msg_flags Linux would set (MSG_TRUNC when a datagram did not fit).
// flags may hold MSG_PEEK, MSG_DONTWAIT, MSG_TRUNC (return a datagram's
// real length; a stream discards the bytes) and MSG_WAITALL. A count of 0
// without error is end of file. No control messages are produced.
func (s *Socket) RecvMsg(ctx context.Context, iov [][]byte, flags int) (n int, from []byte, msgFlags int, e unix.Errno) {
	if s.isClosed() {
		return 0, nil, 0, unix.EBADF
	}
	if s.nl != nil {
		return s.nl.recv(ctx, iov, flags)
	}
	return s.inet.recv(ctx, iov, flags)
}

// SendMsg is sendmsg(2) (and sendto(2), write(2)): it sends iov, to the
// sockaddr to if not empty, and returns the bytes taken. flags may hold
// MSG_DONTWAIT and MSG_MORE; MSG_NOSIGNAL is the kernel's business (no
// signal is raised here in any case). A blocking stream socket takes all
// of iov unless interrupted or timed out after part of it.
func (s *Socket) SendMsg(ctx context.Context, iov [][]byte, to []byte, flags int) (int, unix.Errno) {
	if s.isClosed() {
		return 0, unix.EBADF
	}
	if s.nl != nil {
		return s.nl.send(iov, to)
	}
	return s.inet.send(ctx, iov, to, flags)
}

// Getsockname is getsockname(2): the socket's own sockaddr.
func (s *Socket) Getsockname() ([]byte, unix.Errno) {
	if s.isClosed() {
		return nil, unix.EBADF
	}
	if s.nl != nil {
		return s.nl.sockname(), 0
	}
	return s.inet.sockname()
}

// Getpeername is getpeername(2): the connected peer's sockaddr, or
// ENOTCONN.
func (s *Socket) Getpeername() ([]byte, unix.Errno) {
	if s.isClosed() {
		return nil, unix.EBADF
	}
	if s.nl != nil {
		return s.nl.peername(), 0
	}
	return s.inet.peername()
}

// Shutdown is shutdown(2) with SHUT_RD, SHUT_WR or SHUT_RDWR.
func (s *Socket) Shutdown(how int) unix.Errno {
	if s.isClosed() {
		return unix.EBADF
	}
	if s.nl != nil {
		if how < unix.SHUT_RD || how > unix.SHUT_RDWR {
			return unix.EINVAL
		}
		return 0
	}
	return s.inet.shutdown(how)
}

// InQueue is ioctl FIONREAD (SIOCINQ): the bytes waiting to be read, for
// a datagram socket the size of the next datagram.
func (s *Socket) InQueue() (int, unix.Errno) {
	if s.isClosed() {
		return 0, unix.EBADF
	}
	if s.nl != nil {
		return s.nl.inq(), 0
	}
	return s.inet.inq()
}

// OutQueue is ioctl TIOCOUTQ (SIOCOUTQ): the bytes sent but not yet
// acknowledged, for TCP.
func (s *Socket) OutQueue() (int, unix.Errno) {
	if s.isClosed() {
		return 0, unix.EBADF
	}
	if s.nl != nil {
		return 0, 0
	}
	return s.inet.outq()
}

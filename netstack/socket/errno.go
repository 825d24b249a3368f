package socket

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// errno translates a gVisor error into the errno Linux returns in the same
// situation. ErrClosedForReceive is end of file, which callers handle
// before asking; here it is 0.
func errno(err tcpip.Error) unix.Errno {
	switch err.(type) {
	case nil, *tcpip.ErrClosedForReceive:
		return 0
	case *tcpip.ErrWouldBlock:
		return unix.EAGAIN
	case *tcpip.ErrConnectStarted:
		return unix.EINPROGRESS
	case *tcpip.ErrAlreadyConnecting:
		return unix.EALREADY
	case *tcpip.ErrAlreadyConnected:
		return unix.EISCONN
	case *tcpip.ErrNotConnected:
		return unix.ENOTCONN
	case *tcpip.ErrConnectionRefused:
		return unix.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return unix.ECONNRESET
	case *tcpip.ErrConnectionAborted:
		return unix.ECONNABORTED
	case *tcpip.ErrClosedForSend, *tcpip.ErrAborted:
		// ErrAborted is a reset received in CLOSE-WAIT, which Linux
		// reports as EPIPE.
		return unix.EPIPE
	case *tcpip.ErrPortInUse, *tcpip.ErrAlreadyBound:
		return unix.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return unix.EADDRNOTAVAIL
	case *tcpip.ErrNoPortAvailable:
		return unix.EAGAIN
	case *tcpip.ErrNetworkUnreachable:
		return unix.ENETUNREACH
	case *tcpip.ErrHostUnreachable:
		return unix.EHOSTUNREACH
	case *tcpip.ErrHostDown:
		return unix.EHOSTDOWN
	case *tcpip.ErrNoNet:
		return unix.ENONET
	case *tcpip.ErrTimeout:
		return unix.ETIMEDOUT
	case *tcpip.ErrDestinationRequired:
		return unix.EDESTADDRREQ
	case *tcpip.ErrMessageTooLong:
		return unix.EMSGSIZE
	case *tcpip.ErrNoBufferSpace:
		return unix.ENOBUFS
	case *tcpip.ErrBroadcastDisabled:
		return unix.EACCES
	case *tcpip.ErrNotPermitted:
		return unix.EPERM
	case *tcpip.ErrAddressFamilyNotSupported:
		return unix.EAFNOSUPPORT
	case *tcpip.ErrNotSupported:
		return unix.EOPNOTSUPP
	case *tcpip.ErrUnknownProtocolOption:
		return unix.ENOPROTOOPT
	case *tcpip.ErrQueueSizeNotSupported:
		return unix.ENOTTY
	case *tcpip.ErrDuplicateAddress:
		return unix.EEXIST
	case *tcpip.ErrBadAddress, *tcpip.ErrBadBuffer:
		return unix.EFAULT
	case *tcpip.ErrUnknownDevice, *tcpip.ErrUnknownNICID, *tcpip.ErrInvalidNICID:
		return unix.ENODEV
	case *tcpip.ErrEndpointBusy:
		return unix.EBUSY
	case *tcpip.ErrNoSuchFile:
		return unix.ENOENT
	default:
		// ErrInvalidEndpointState, ErrInvalidOptionValue,
		// ErrUnknownProtocol, ErrMalformedHeader, ErrInvalidPortRange,
		// ErrMissingRequiredFields, ErrMulticastInputCannotBeOutput...
		return unix.EINVAL
	}
}

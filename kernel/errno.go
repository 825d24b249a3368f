package kernel

import "golang.org/x/sys/unix"

// Errno values returned to the runtime (as -errno in RAX).
const (
	_EPERM        = unix.EPERM
	_ENOENT       = unix.ENOENT
	_ESRCH        = unix.ESRCH
	_EINTR        = unix.EINTR
	_EBADF        = unix.EBADF
	_EAGAIN       = unix.EAGAIN
	_ENOMEM       = unix.ENOMEM
	_EFAULT       = unix.EFAULT
	_EEXIST       = unix.EEXIST
	_ENODEV       = unix.ENODEV
	_EINVAL       = unix.EINVAL
	_ENFILE       = unix.ENFILE
	_EMFILE       = unix.EMFILE
	_ENOTTY       = unix.ENOTTY
	_ENOSPC       = unix.ENOSPC
	_ERANGE       = unix.ERANGE
	_ENOSYS       = unix.ENOSYS
	_ETIMEDOUT    = unix.ETIMEDOUT
	_EPIPE        = unix.EPIPE
	_EFBIG        = unix.EFBIG
	_EBUSY        = unix.EBUSY
	_EIO          = unix.EIO
	_ENAMETOOLONG = unix.ENAMETOOLONG
	_EAFNOSUPPORT = unix.EAFNOSUPPORT

	_EPROTONOSUPPORT = unix.EPROTONOSUPPORT
	_ESOCKTNOSUPPORT = unix.ESOCKTNOSUPPORT
	_ENOBUFS         = unix.ENOBUFS
	_ENOTCONN        = unix.ENOTCONN
)

func errno(e unix.Errno) uint64 { return uint64(-int64(e)) }

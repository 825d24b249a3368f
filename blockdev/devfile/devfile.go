// Package devfile makes disks visible to ordinary Go code as Linux block
// device files: after Serve, os.OpenFile("/dev/vda", ...) and its ReadAt,
// WriteAt, Seek, Sync, Stat and Close reach a blockdev.Device, with the
// results Linux gives for a block device:
//
//   - opening a read-only disk for writing fails with EROFS;
//   - reads stop at the end of the disk (0 bytes, io.EOF, at or past it);
//     writes there fail with ENOSPC, and a write crossing it is cut short;
//   - fsync flushes the disk's write cache;
//   - fstat reports S_IFBLK with size 0, as Linux; the size comes from
//     lseek(SEEK_END) or the BLKGETSIZE64 ioctl.
//
// The kernel forwards the calls through kernel/serve.
package devfile

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/unikgo/unikgo/blockdev"
	"github.com/unikgo/unikgo/kernel/serve"
)

// Disk is a device and the path it appears at.
type Disk struct {
	Path string
	Dev  blockdev.Device
	// Rdev is the device number fstat reports (major<<8 | minor for the
	// small numbers Linux uses: 202:0 for xvda, 253:0 for vda).
	Rdev uint64
}

// Linux ioctls on block devices (include/uapi/linux/fs.h).
const (
	blkROGet     = 0x125e
	blkGetSize   = 0x1260
	blkFlsBuf    = 0x1261
	blkSSZGet    = 0x1268
	blkPBSZGet   = 0x127b
	blkGetSize64 = 0x80081272

	maxRW = 0x7ffff000 // Linux's MAX_RW_COUNT: the most one call transfers
)

// Files answers the calls; the kernel's server device feeds it.
type Files struct {
	mu    sync.Mutex
	names map[serve.Obj]*Disk
	open  map[serve.Obj]*file
}

type file struct {
	d      *Disk
	rd, wr bool
	mu     sync.Mutex // guards off
	off    int64
}

// Serve registers the disks' paths with the kernel and answers their calls
// until ctx ends. It returns once the paths are registered, serving in the
// background; errors after that are reported through fail (nil: ignored).
func Serve(ctx context.Context, disks []Disk, fail func(error)) error {
	srv, err := serve.Open()
	if err != nil {
		return err
	}
	fs := &Files{names: make(map[serve.Obj]*Disk), open: make(map[serve.Obj]*file)}
	for i := range disks {
		o, err := srv.Register(disks[i].Path)
		if err != nil {
			srv.Close()
			return err
		}
		fs.names[o] = &disks[i]
	}
	go func() {
		err := srv.Serve(ctx, fs.Handle)
		if fail != nil && ctx.Err() == nil {
			fail(fmt.Errorf("devfile: %w", err))
		}
	}()
	return nil
}

// NewFiles returns a Files for disks already registered as objects, for
// tests that feed requests by hand.
func NewFiles(names map[serve.Obj]*Disk) *Files {
	return &Files{names: names, open: make(map[serve.Obj]*file)}
}

// Handle answers one forwarded call.
func (fs *Files) Handle(r *serve.Request) int64 {
	fs.mu.Lock()
	d, isName := fs.names[r.Obj]
	f := fs.open[r.Obj]
	if r.Sysno == unix.SYS_CLOSE {
		delete(fs.open, r.Obj)
	}
	fs.mu.Unlock()
	switch {
	case r.Sysno == unix.SYS_CLOSE:
		return 0
	case isName:
		return fs.onName(d, r)
	case f != nil:
		return f.call(r)
	}
	return -int64(unix.EBADF)
}

func (fs *Files) onName(d *Disk, r *serve.Request) int64 {
	switch r.Sysno {
	case unix.SYS_OPENAT, unix.SYS_OPEN:
		flags := r.AfterPath()
		if r.New < 0 {
			return -int64(unix.EINVAL)
		}
		switch {
		case flags&unix.O_CREAT != 0 && flags&unix.O_EXCL != 0:
			return -int64(unix.EEXIST)
		case flags&unix.O_DIRECTORY != 0:
			return -int64(unix.ENOTDIR)
		}
		f := &file{d: d}
		switch flags & unix.O_ACCMODE {
		case unix.O_RDONLY:
			f.rd = true
		case unix.O_WRONLY:
			f.wr = true
		case unix.O_RDWR:
			f.rd, f.wr = true, true
		default:
			return -int64(unix.EINVAL)
		}
		if f.wr && d.Dev.ReadOnly() {
			return -int64(unix.EROFS)
		}
		fs.mu.Lock()
		fs.open[r.New] = f
		fs.mu.Unlock()
		return 0
	case unix.SYS_NEWFSTATAT, unix.SYS_STAT, unix.SYS_LSTAT:
		return stat(d, r.AfterPath())
	case unix.SYS_ACCESS, unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2:
		mode := r.AfterPath()
		if mode&unix.W_OK != 0 && d.Dev.ReadOnly() {
			return -int64(unix.EROFS)
		}
		if mode&unix.X_OK != 0 {
			return -int64(unix.EACCES)
		}
		return 0
	}
	return -int64(unix.ENOSYS) // statx: callers fall back to fstatat
}

func stat(d *Disk, p uintptr) int64 {
	st := unix.Stat_t{
		Dev:     5,
		Ino:     uint64(d.Rdev) + 1000,
		Nlink:   1,
		Mode:    unix.S_IFBLK | 0o660,
		Rdev:    d.Rdev,
		Blksize: 4096,
	}
	if d.Dev.ReadOnly() {
		st.Mode = unix.S_IFBLK | 0o440
	}
	*(*unix.Stat_t)(serve.Pointer(p)) = st
	return 0
}

// iovecs is the program's iovec array, cut at maxRW bytes in all as
// Linux's rw_verify_area does.
func iovecs(p, n uintptr) ([][]byte, int64) {
	bs, e := serve.Iovecs(p, n)
	if e != 0 {
		return nil, -int64(e)
	}
	total := 0
	for i, b := range bs {
		if total+len(b) > maxRW {
			bs[i] = b[:maxRW-total]
		}
		total += len(bs[i])
	}
	return bs, 0
}

func (f *file) call(r *serve.Request) int64 {
	a := r.Args
	switch r.Sysno {
	case unix.SYS_READ:
		return f.seq(false, [][]byte{serve.Bytes(a[1], min(a[2], maxRW))})
	case unix.SYS_WRITE:
		return f.seq(true, [][]byte{serve.Bytes(a[1], min(a[2], maxRW))})
	case unix.SYS_READV, unix.SYS_WRITEV:
		bs, e := iovecs(a[1], a[2])
		if e != 0 {
			return e
		}
		return f.seq(r.Sysno == unix.SYS_WRITEV, bs)
	case unix.SYS_PREAD64, unix.SYS_PWRITE64:
		return f.at(r.Sysno == unix.SYS_PWRITE64, [][]byte{serve.Bytes(a[1], min(a[2], maxRW))}, int64(a[3]))
	case unix.SYS_PREADV, unix.SYS_PWRITEV, unix.SYS_PREADV2, unix.SYS_PWRITEV2:
		bs, e := iovecs(a[1], a[2])
		if e != 0 {
			return e
		}
		w := r.Sysno == unix.SYS_PWRITEV || r.Sysno == unix.SYS_PWRITEV2
		if int64(a[3]) == -1 && (r.Sysno == unix.SYS_PREADV2 || r.Sysno == unix.SYS_PWRITEV2) {
			return f.seq(w, bs)
		}
		return f.at(w, bs, int64(a[3]))
	case unix.SYS_LSEEK:
		return f.seek(int64(a[1]), int(a[2]))
	case unix.SYS_FSYNC, unix.SYS_FDATASYNC:
		if err := f.d.Dev.Flush(); err != nil {
			return errnoOf(err)
		}
		return 0
	case unix.SYS_FSTAT:
		return stat(f.d, a[1])
	case unix.SYS_IOCTL:
		return f.ioctl(a[1], a[2])
	case unix.SYS_FADVISE64:
		return 0
	case unix.SYS_FTRUNCATE, unix.SYS_FALLOCATE:
		return -int64(unix.EINVAL)
	case unix.SYS_CONNECT, unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_ACCEPT, unix.SYS_ACCEPT4,
		unix.SYS_SENDTO, unix.SYS_RECVFROM, unix.SYS_SENDMSG, unix.SYS_RECVMSG,
		unix.SYS_SENDMMSG, unix.SYS_RECVMMSG, unix.SYS_SHUTDOWN, unix.SYS_GETSOCKNAME,
		unix.SYS_GETPEERNAME, unix.SYS_SETSOCKOPT, unix.SYS_GETSOCKOPT:
		return -int64(unix.ENOTSOCK)
	}
	return -int64(unix.EINVAL)
}

// seq reads or writes at the file offset and advances it.
func (f *file) seq(write bool, bs [][]byte) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.at(write, bs, f.off)
	if n > 0 {
		f.off += n
	}
	return n
}

// at reads or writes bs at off, as a block device: short at the end.
func (f *file) at(write bool, bs [][]byte, off int64) int64 {
	if write && !f.wr || !write && !f.rd {
		return -int64(unix.EBADF)
	}
	if off < 0 {
		return -int64(unix.EINVAL)
	}
	size := f.d.Dev.Size()
	done := int64(0)
	for _, b := range bs {
		if len(b) == 0 {
			continue
		}
		pos := off + done
		if pos >= size {
			if write && done == 0 {
				return -int64(unix.ENOSPC)
			}
			break
		}
		if rest := size - pos; int64(len(b)) > rest {
			b = b[:rest]
		}
		var n int
		var err error
		if write {
			n, err = f.d.Dev.WriteAt(b, pos)
		} else {
			n, err = f.d.Dev.ReadAt(b, pos)
		}
		done += int64(n)
		if err != nil {
			if done > 0 {
				return done
			}
			return errnoOf(err)
		}
	}
	return done
}

func (f *file) seek(off int64, whence int) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var base int64
	switch whence {
	case unix.SEEK_SET:
	case unix.SEEK_CUR:
		base = f.off
	case unix.SEEK_END:
		base = f.d.Dev.Size()
	default:
		return -int64(unix.EINVAL)
	}
	n := base + off
	if n < 0 || (off > 0 && n < base) {
		return -int64(unix.EINVAL)
	}
	f.off = n
	return n
}

func (f *file) ioctl(req, arg uintptr) int64 {
	dev := f.d.Dev
	put := func(v uint64, size uintptr) int64 {
		b := serve.Bytes(arg, size)
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		return 0
	}
	switch req {
	case blkGetSize64:
		return put(uint64(dev.Size()), 8)
	case blkGetSize:
		return put(uint64(dev.Size())/512, 8)
	case blkSSZGet, blkPBSZGet:
		return put(uint64(dev.SectorSize()), 4)
	case blkROGet:
		ro := uint64(0)
		if dev.ReadOnly() {
			ro = 1
		}
		return put(ro, 4)
	case blkFlsBuf:
		if err := dev.Flush(); err != nil {
			return errnoOf(err)
		}
		return 0
	}
	return -int64(unix.ENOTTY)
}

// errnoOf maps a driver's error to what Linux returns for it.
func errnoOf(err error) int64 {
	switch {
	case errors.Is(err, blockdev.ErrReadOnly):
		return -int64(unix.EROFS)
	case errors.Is(err, blockdev.ErrOutOfRange):
		return -int64(unix.ENOSPC)
	case errors.Is(err, blockdev.ErrClosed):
		return -int64(unix.EIO)
	}
	return serve.Errno(err)
}

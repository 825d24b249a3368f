// Package textfile serves small read-only files whose content Go code
// makes, such as /etc/resolv.conf and /etc/hosts from the network
// configuration: the program opens, reads and stats them as on Linux. Each
// open takes a snapshot; the modification time changes when the content
// does, so readers that poll it (Go's resolver stats resolv.conf every
// five seconds) see updates.
package textfile

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/unikgo/unikgo/kernel/serve"
	"golang.org/x/sys/unix"
)

// Content makes a file's current content.
type Content func() []byte

// Files answers calls on registered names and their open files.
type Files struct {
	mu    sync.Mutex
	names map[serve.Obj]*entry    // +checklocks:mu
	open  map[serve.Obj]*openFile // +checklocks:mu
	now   func() time.Time
}

// openFile is an open file description: a snapshot and an offset.
type openFile struct {
	e     *entry
	b     []byte
	mtime time.Time
	off   int64
}

// entry is one registered file.
type entry struct {
	ino     uint64
	content Content
	last    []byte    // content at the last look
	mtime   time.Time // when it last changed
}

// New returns Files for names (object → content), as Register gave them.
func New(names map[serve.Obj]Content) *Files {
	fs := &Files{names: make(map[serve.Obj]*entry), open: make(map[serve.Obj]*openFile), now: time.Now}
	ino := uint64(2000)
	for o, c := range names {
		fs.names[o] = &entry{ino: ino, content: c}
		ino++
	}
	return fs
}

// Serve registers the paths with the kernel and answers their calls until
// ctx ends. It returns once the paths are registered, serving in the
// background; errors after that are reported through fail (nil: ignored).
func Serve(ctx context.Context, files map[string]Content, fail func(error)) error {
	srv, err := serve.Open()
	if err != nil {
		return err
	}
	names := make(map[serve.Obj]Content)
	for p, c := range files {
		o, err := srv.Register(p)
		if err != nil {
			srv.Close()
			return err
		}
		names[o] = c
	}
	go func() {
		defer srv.Close()
		err := srv.Serve(ctx, New(names).Handle)
		if fail != nil && ctx.Err() == nil {
			fail(fmt.Errorf("textfile: %w", err))
		}
	}()
	return nil
}

// look returns e's content and modification time, noting a change.
func (fs *Files) look(e *entry) ([]byte, time.Time) {
	b := e.content()
	if e.mtime.IsZero() || !bytes.Equal(b, e.last) {
		e.last, e.mtime = bytes.Clone(b), fs.now()
	}
	return e.last, e.mtime
}

// Handle answers one forwarded call.
func (fs *Files) Handle(r *serve.Request) int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if e := fs.names[r.Obj]; e != nil {
		return fs.onName(e, r)
	}
	f := fs.open[r.Obj]
	if f == nil {
		if r.Orphan() {
			return 0
		}
		return -int64(unix.EBADF)
	}
	a := r.Args
	switch r.Sysno {
	case unix.SYS_CLOSE:
		delete(fs.open, r.Obj)
		return 0
	case unix.SYS_READ:
		n := readAt(f.b, serve.Bytes(a[1], a[2]), f.off)
		if n > 0 {
			f.off += n
		}
		return n
	case unix.SYS_READV:
		iov, e := serve.Iovecs(a[1], a[2])
		if e != 0 {
			return -int64(e)
		}
		total := int64(0)
		for _, p := range iov {
			n := readAt(f.b, p, f.off)
			f.off += n
			total += n
		}
		return total
	case unix.SYS_PREAD64:
		return readAt(f.b, serve.Bytes(a[1], a[2]), int64(a[3]))
	case unix.SYS_LSEEK:
		off := int64(a[1])
		switch a[2] {
		case 0: // SEEK_SET
		case 1: // SEEK_CUR
			off += f.off
		case 2: // SEEK_END
			off += int64(len(f.b))
		default:
			return -int64(unix.EINVAL)
		}
		if off < 0 {
			return -int64(unix.EINVAL)
		}
		f.off = off
		return off
	case unix.SYS_FSTAT:
		return stat(f.e, f.b, f.mtime, a[1])
	case unix.SYS_WRITE, unix.SYS_WRITEV, unix.SYS_PWRITE64, unix.SYS_PWRITEV, unix.SYS_PWRITEV2,
		unix.SYS_FTRUNCATE, unix.SYS_FALLOCATE:
		return -int64(unix.EBADF) // opened read-only
	case unix.SYS_FSYNC, unix.SYS_FDATASYNC, unix.SYS_FADVISE64:
		return 0
	case unix.SYS_IOCTL:
		return -int64(unix.ENOTTY)
	}
	return -int64(unix.ENOSYS)
}

func readAt(b, p []byte, off int64) int64 {
	if off < 0 {
		return -int64(unix.EINVAL)
	}
	if off >= int64(len(b)) {
		return 0
	}
	return int64(copy(p, b[off:]))
}

func (fs *Files) onName(e *entry, r *serve.Request) int64 {
	switch r.Sysno {
	case unix.SYS_OPEN, unix.SYS_OPENAT:
		flags := r.AfterPath()
		switch {
		case r.New < 0:
			return -int64(unix.EINVAL)
		case flags&unix.O_CREAT != 0 && flags&unix.O_EXCL != 0:
			return -int64(unix.EEXIST)
		case flags&unix.O_DIRECTORY != 0:
			return -int64(unix.ENOTDIR)
		case flags&unix.O_ACCMODE != unix.O_RDONLY, flags&unix.O_TRUNC != 0:
			return -int64(unix.EROFS)
		}
		b, mt := fs.look(e)
		fs.open[r.New] = &openFile{e: e, b: b, mtime: mt}
		return 0
	case unix.SYS_NEWFSTATAT, unix.SYS_STAT, unix.SYS_LSTAT:
		b, mt := fs.look(e)
		return stat(e, b, mt, r.AfterPath())
	case unix.SYS_ACCESS, unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2:
		mode := r.AfterPath()
		switch {
		case mode&unix.W_OK != 0:
			return -int64(unix.EROFS)
		case mode&unix.X_OK != 0:
			return -int64(unix.EACCES)
		}
		return 0
	}
	return -int64(unix.ENOSYS) // statx: callers fall back to fstatat
}

// stat fills struct stat for a regular file of mode 0444.
func stat(e *entry, b []byte, mt time.Time, p uintptr) int64 {
	if p == 0 {
		return -int64(unix.EFAULT)
	}
	ts := unix.NsecToTimespec(mt.UnixNano())
	*(*unix.Stat_t)(serve.Pointer(p)) = unix.Stat_t{
		Dev:     6,
		Ino:     e.ino,
		Nlink:   1,
		Mode:    unix.S_IFREG | 0o444,
		Size:    int64(len(b)),
		Blksize: 4096,
		Blocks:  (int64(len(b)) + 511) / 512,
		Mtim:    ts,
		Ctim:    ts,
		Atim:    ts,
	}
	return 0
}

package devfile

import (
	"bytes"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/unikgo/unikgo/blockdev/memdisk"
	"github.com/unikgo/unikgo/kernel/serve"
)

// The handler is exercised with requests whose pointers are this test's
// own memory, exactly as the kernel forwards a program's calls.

const (
	rwName serve.Obj = 1
	roName serve.Obj = 2
)

type harness struct {
	t       *testing.T
	fs      *Files
	rw, ro  *memdisk.Disk
	nextObj serve.Obj
}

func newHarness(t *testing.T) *harness {
	rw, err := memdisk.New(1<<20, 512, false)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := memdisk.New(64<<10, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	fs := NewFiles(map[serve.Obj]*Disk{
		rwName: {Path: "/dev/vda", Dev: rw, Rdev: 253<<8 | 0},
		roName: {Path: "/dev/vdb", Dev: ro, Rdev: 253<<8 | 16},
	})
	return &harness{t: t, fs: fs, rw: rw, ro: ro, nextObj: 10}
}

func p[T any](v *T) uintptr { return uintptr(unsafe.Pointer(v)) }
func pb(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

func (h *harness) call(obj serve.Obj, sysno uintptr, args ...uintptr) int64 {
	r := serve.Request{Sysno: sysno, Obj: obj, New: -1}
	copy(r.Args[:], args)
	return h.fs.Handle(&r)
}

// open opens a disk's path with flags, returning the new object.
func (h *harness) open(name serve.Obj, flags int) (serve.Obj, int64) {
	o := h.nextObj
	h.nextObj++
	path := []byte("/dev/x\x00")
	r := serve.Request{Sysno: unix.SYS_OPENAT, Obj: name, New: o}
	r.Args = [6]uintptr{uintptr(unix.AT_FDCWD & 0xffffffff), pb(path), uintptr(flags), 0}
	return o, h.fs.Handle(&r)
}

func errno(e unix.Errno) int64 { return -int64(e) }

func TestOpenFlags(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name  string
		obj   serve.Obj
		flags int
		want  int64
	}{
		{"rw disk read-write", rwName, unix.O_RDWR | unix.O_CLOEXEC, 0},
		{"rw disk write-only", rwName, unix.O_WRONLY, 0},
		{"ro disk read-only", roName, unix.O_RDONLY, 0},
		{"ro disk read-write", roName, unix.O_RDWR, errno(unix.EROFS)},
		{"ro disk write-only", roName, unix.O_WRONLY, errno(unix.EROFS)},
		{"exclusive create", rwName, unix.O_RDWR | unix.O_CREAT | unix.O_EXCL, errno(unix.EEXIST)},
		{"directory", rwName, unix.O_RDONLY | unix.O_DIRECTORY, errno(unix.ENOTDIR)},
		{"bad access mode", rwName, 3, errno(unix.EINVAL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := h.open(tc.obj, tc.flags); got != tc.want {
				t.Errorf("open = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestReadWriteSeek(t *testing.T) {
	h := newHarness(t)
	f, r := h.open(rwName, unix.O_RDWR)
	if r != 0 {
		t.Fatalf("open = %d", r)
	}
	msg := []byte("hello, disk")
	if n := h.call(f, unix.SYS_PWRITE64, 3, pb(msg), uintptr(len(msg)), 1000); n != int64(len(msg)) {
		t.Fatalf("pwrite = %d", n)
	}
	if !bytes.Equal(h.rw.Bytes()[1000:1000+len(msg)], msg) {
		t.Errorf("disk holds %q at 1000", h.rw.Bytes()[1000:1000+len(msg)])
	}
	// Sequential I/O moves the offset; SEEK_END is the disk size.
	if n := h.call(f, unix.SYS_LSEEK, 3, 1000, unix.SEEK_SET); n != 1000 {
		t.Fatalf("lseek = %d", n)
	}
	buf := make([]byte, 5)
	if n := h.call(f, unix.SYS_READ, 3, pb(buf), 5); n != 5 || string(buf) != "hello" {
		t.Errorf("read = %d %q", n, buf)
	}
	if n := h.call(f, unix.SYS_LSEEK, 3, 0, unix.SEEK_CUR); n != 1005 {
		t.Errorf("offset after read = %d, want 1005", n)
	}
	if n := h.call(f, unix.SYS_LSEEK, 3, 0, unix.SEEK_END); n != 1<<20 {
		t.Errorf("SEEK_END = %d, want %d", n, 1<<20)
	}
	if n := h.call(f, unix.SYS_LSEEK, 3, ^uintptr(0), unix.SEEK_SET); n != errno(unix.EINVAL) {
		t.Errorf("seek to -1 = %d, want EINVAL", n)
	}
	// Vectored writes and reads.
	a, b := []byte("abc"), []byte("defg")
	iov := [][2]uintptr{{pb(a), 3}, {pb(b), 4}}
	if n := h.call(f, unix.SYS_PWRITEV, 3, p(&iov[0]), 2, 4096); n != 7 {
		t.Fatalf("pwritev = %d", n)
	}
	out := make([]byte, 7)
	riov := [][2]uintptr{{pb(out), 2}, {pb(out[2:]), 5}}
	if n := h.call(f, unix.SYS_PREADV, 3, p(&riov[0]), 2, 4096); n != 7 || string(out) != "abcdefg" {
		t.Errorf("preadv = %d %q", n, out)
	}
}

func TestEndOfDisk(t *testing.T) {
	h := newHarness(t)
	f, _ := h.open(rwName, unix.O_RDWR)
	size := uintptr(1 << 20)
	buf := make([]byte, 100)
	for _, tc := range []struct {
		name  string
		sysno uintptr
		off   uintptr
		want  int64
	}{
		{"read crossing the end is short", unix.SYS_PREAD64, size - 40, 40},
		{"read at the end is EOF", unix.SYS_PREAD64, size, 0},
		{"read past the end is EOF", unix.SYS_PREAD64, size + 4096, 0},
		{"write crossing the end is short", unix.SYS_PWRITE64, size - 40, 40},
		{"write at the end is ENOSPC", unix.SYS_PWRITE64, size, errno(unix.ENOSPC)},
		{"negative offset", unix.SYS_PREAD64, ^uintptr(0), errno(unix.EINVAL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.call(f, tc.sysno, 3, pb(buf), 100, tc.off); got != tc.want {
				t.Errorf("= %d, want %d", got, tc.want)
			}
		})
	}
}

func TestReadOnlyAndModes(t *testing.T) {
	h := newHarness(t)
	ro, _ := h.open(roName, unix.O_RDONLY)
	buf := make([]byte, 10)
	if n := h.call(ro, unix.SYS_PWRITE64, 3, pb(buf), 10, 0); n != errno(unix.EBADF) {
		t.Errorf("write on an O_RDONLY file = %d, want EBADF", n)
	}
	wo, _ := h.open(rwName, unix.O_WRONLY)
	if n := h.call(wo, unix.SYS_PREAD64, 3, pb(buf), 10, 0); n != errno(unix.EBADF) {
		t.Errorf("read on an O_WRONLY file = %d, want EBADF", n)
	}
	var v int32
	if n := h.call(ro, unix.SYS_IOCTL, 3, blkROGet, p(&v)); n != 0 || v != 1 {
		t.Errorf("BLKROGET = %d, %d; want 0, 1", n, v)
	}
	if n := h.call(ro, unix.SYS_FTRUNCATE, 3, 0); n != errno(unix.EINVAL) {
		t.Errorf("ftruncate = %d, want EINVAL", n)
	}
	if n := h.call(ro, unix.SYS_CONNECT, 3, 0, 0); n != errno(unix.ENOTSOCK) {
		t.Errorf("connect = %d, want ENOTSOCK", n)
	}
	if n := h.call(roName, unix.SYS_ACCESS, 0, unix.W_OK); n != errno(unix.EROFS) {
		t.Errorf("access(W_OK) on a read-only disk = %d, want EROFS", n)
	}
}

func TestStatIoctlSyncClose(t *testing.T) {
	h := newHarness(t)
	f, _ := h.open(rwName, unix.O_RDWR)
	var st unix.Stat_t
	if n := h.call(f, unix.SYS_FSTAT, 3, p(&st)); n != 0 {
		t.Fatalf("fstat = %d", n)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != 253<<8 || st.Size != 0 {
		t.Errorf("fstat: mode %#o rdev %#x size %d; want a block device 253:0 of size 0", st.Mode, st.Rdev, st.Size)
	}
	var st2 unix.Stat_t
	if n := h.call(rwName, unix.SYS_NEWFSTATAT, uintptr(unix.AT_FDCWD&0xffffffff), 0, p(&st2), 0); n != 0 || st2 != st {
		t.Errorf("fstatat = %d, %+v; want the fstat result", n, st2)
	}
	var size uint64
	if n := h.call(f, unix.SYS_IOCTL, 3, blkGetSize64, p(&size)); n != 0 || size != 1<<20 {
		t.Errorf("BLKGETSIZE64 = %d, %d", n, size)
	}
	var ss int32
	if n := h.call(f, unix.SYS_IOCTL, 3, blkSSZGet, p(&ss)); n != 0 || ss != 512 {
		t.Errorf("BLKSSZGET = %d, %d", n, ss)
	}
	if n := h.call(f, unix.SYS_IOCTL, 3, 0x5401, 0); n != errno(unix.ENOTTY) {
		t.Errorf("TCGETS = %d, want ENOTTY", n)
	}
	if n := h.call(f, unix.SYS_FSYNC, 3); n != 0 || h.rw.Flushes() != 1 {
		t.Errorf("fsync = %d with %d flushes, want 0 with 1", n, h.rw.Flushes())
	}
	if n := h.call(f, unix.SYS_CLOSE, 3); n != 0 {
		t.Errorf("close = %d", n)
	}
	if n := h.call(f, unix.SYS_FSYNC, 3); n != errno(unix.EBADF) {
		t.Errorf("fsync after close = %d, want EBADF", n)
	}
	h.rw.Close()
	f2, _ := h.open(rwName, unix.O_RDWR)
	if n := h.call(f2, unix.SYS_FSYNC, 3); n != errno(unix.EIO) {
		t.Errorf("fsync on a closed disk = %d, want EIO", n)
	}
}

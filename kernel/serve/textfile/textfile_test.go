package textfile

import (
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/kernel/serve"
	"golang.org/x/sys/unix"
)

const name serve.Obj = 1

type harness struct {
	fs      *Files
	mu      sync.Mutex
	content string
	clock   time.Time
}

func newHarness() *harness {
	h := &harness{content: "nameserver 10.0.2.3\n", clock: time.Unix(1000, 0)}
	h.fs = New(map[serve.Obj]Content{name: func() []byte {
		h.mu.Lock()
		defer h.mu.Unlock()
		return []byte(h.content)
	}})
	h.fs.now = func() time.Time { return h.clock }
	return h
}

func (h *harness) call(sysno uintptr, obj, nw serve.Obj, args ...uintptr) int64 {
	r := serve.Request{ID: 1, Sysno: sysno, Obj: obj, New: nw}
	copy(r.Args[:], args)
	return h.fs.Handle(&r)
}

func ptr[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }
func buf(b []byte) uintptr    { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func TestReadStatChange(t *testing.T) {
	h := newHarness()
	var st unix.Stat_t
	if v := h.call(unix.SYS_NEWFSTATAT, name, -1, 0, 0, ptr(&st), 0); v != 0 {
		t.Fatalf("fstatat: %d", v)
	}
	if st.Mode != unix.S_IFREG|0o444 || st.Size != int64(len(h.content)) || st.Mtim.Sec != 1000 {
		t.Errorf("stat: mode %#o size %d mtime %d", st.Mode, st.Size, st.Mtim.Sec)
	}
	const f = 5
	if v := h.call(unix.SYS_OPENAT, name, f, 0, 0, unix.O_RDONLY|unix.O_CLOEXEC); v != 0 {
		t.Fatalf("open: %d", v)
	}
	// The content changes after the open: the open file keeps its
	// snapshot, a later stat sees a new size and time.
	h.mu.Lock()
	h.content = "nameserver 192.168.1.1\nsearch lan\n"
	h.mu.Unlock()
	h.clock = time.Unix(2000, 0)

	got := []byte{}
	b := make([]byte, 7)
	for {
		n := h.call(unix.SYS_READ, f, -1, 0, buf(b), uintptr(len(b)))
		if n < 0 {
			t.Fatalf("read: %d", n)
		}
		if n == 0 {
			break
		}
		got = append(got, b[:n]...)
	}
	if string(got) != "nameserver 10.0.2.3\n" {
		t.Errorf("read %q", got)
	}
	if v := h.call(unix.SYS_LSEEK, f, -1, 0, 11, 0); v != 11 {
		t.Errorf("lseek: %d", v)
	}
	if n := h.call(unix.SYS_READ, f, -1, 0, buf(b), 4); n != 4 || string(b[:4]) != "10.0" {
		t.Errorf("read after lseek: %d %q", n, b[:4])
	}
	if v := h.call(unix.SYS_STAT, name, -1, 0, ptr(&st)); v != 0 || st.Size != int64(len(h.content)) || st.Mtim.Sec != 2000 {
		t.Errorf("stat after the change: %d, size %d mtime %d", v, st.Size, st.Mtim.Sec)
	}
	if v := h.call(unix.SYS_WRITE, f, -1, 0, buf(b), 1); v != -int64(unix.EBADF) {
		t.Errorf("write: %d, want EBADF", v)
	}
	if v := h.call(unix.SYS_CLOSE, f, -1); v != 0 {
		t.Errorf("close: %d", v)
	}
	if v := h.call(unix.SYS_READ, f, -1, 0, buf(b), 1); v != -int64(unix.EBADF) {
		t.Errorf("read after close: %d, want EBADF", v)
	}
}

func TestOpenRefused(t *testing.T) {
	h := newHarness()
	for _, tc := range []struct {
		flags uintptr
		want  unix.Errno
	}{
		{unix.O_WRONLY, unix.EROFS},
		{unix.O_RDWR, unix.EROFS},
		{unix.O_RDONLY | unix.O_TRUNC, unix.EROFS},
		{unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY, unix.EEXIST},
		{unix.O_DIRECTORY, unix.ENOTDIR},
	} {
		if v := h.call(unix.SYS_OPEN, name, 9, 0, tc.flags); v != -int64(tc.want) {
			t.Errorf("open with %#x: %d, want %v", tc.flags, v, tc.want)
		}
	}
	if v := h.call(unix.SYS_ACCESS, name, -1, 0, unix.W_OK); v != -int64(unix.EROFS) {
		t.Errorf("access W_OK: %d, want EROFS", v)
	}
	if v := h.call(unix.SYS_ACCESS, name, -1, 0, unix.R_OK); v != 0 {
		t.Errorf("access R_OK: %d", v)
	}
}

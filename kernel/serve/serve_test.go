package serve

import (
	"context"
	"encoding/binary"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// pair returns a Server on one end of a SOCK_SEQPACKET pair, which keeps
// record boundaries as the kernel device does, and the other end playing
// the kernel.
func pair(t *testing.T) (*Server, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServer(os.NewFile(uintptr(fds[0]), "server"))
	if err != nil {
		t.Fatal(err)
	}
	k := os.NewFile(uintptr(fds[1]), "kernel")
	t.Cleanup(func() { s.Close(); k.Close() })
	return s, k
}

func request(id uint64, sysno uint64, obj, new int32, flags uint32, args ...uint64) []byte {
	b := make([]byte, reqSize)
	le := binary.LittleEndian
	le.PutUint64(b, id)
	le.PutUint64(b[8:], sysno)
	le.PutUint32(b[16:], uint32(obj))
	le.PutUint32(b[20:], uint32(new))
	le.PutUint32(b[24:], flags)
	for i, a := range args {
		le.PutUint64(b[32+8*i:], a)
	}
	return b
}

func TestNextDecodesRequests(t *testing.T) {
	s, k := pair(t)
	batch := append(request(3|7<<32, unix.SYS_PREAD64, 12, -1, flagNonblock, 5, 0x1000, 4096, 1<<40),
		request(orphan|12, unix.SYS_CLOSE, 12, -1, 0)...)
	if _, err := k.Write(batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.Next(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Request{
		{ID: 3 | 7<<32, Sysno: unix.SYS_PREAD64, Obj: 12, New: -1, Nonblock: true, Args: [6]uintptr{5, 0x1000, 4096, 1 << 40}},
		{ID: orphan | 12, Sysno: unix.SYS_CLOSE, Obj: 12, New: -1},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Next (-want +got):\n%s", d)
	}
	if got[0].Orphan() || !got[1].Orphan() {
		t.Errorf("Orphan = %v, %v; want false, true", got[0].Orphan(), got[1].Orphan())
	}
}

func TestNextRefusesPartialRecords(t *testing.T) {
	s, k := pair(t)
	if _, err := k.Write(make([]byte, reqSize+8)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(nil); err == nil {
		t.Error("Next accepted 88 bytes, want an error for a partial request")
	}
}

func TestReplyAndReadyEncoding(t *testing.T) {
	s, k := pair(t)
	if err := s.Reply(42|9<<32, -int64(unix.EROFS)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(17, unix.EPOLLIN|unix.EPOLLOUT, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(18, unix.EPOLLOUT, true); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for _, want := range []struct {
		id   uint64
		val  int64
		kind uint32
	}{
		{42 | 9<<32, -int64(unix.EROFS), replyDone},
		{17, unix.EPOLLIN | unix.EPOLLOUT, replyPoll},
		{18, 1<<32 | unix.EPOLLOUT, replyPoll}, // exact: bit 32
	} {
		b := make([]byte, 64)
		k.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := k.Read(b)
		if err != nil || n != replySize {
			t.Fatalf("kernel end read %d bytes, %v; want one %d-byte reply", n, err, replySize)
		}
		if id, val, kind := le.Uint64(b), int64(le.Uint64(b[8:])), le.Uint32(b[16:]); id != want.id || val != want.val || kind != want.kind {
			t.Errorf("reply = id %#x val %d kind %d; want id %#x val %d kind %d", id, val, kind, want.id, want.val, want.kind)
		}
	}
}

// Serve answers each request in its own goroutine: a request that blocks
// does not hold up the next one.
func TestServeDoesNotSerialize(t *testing.T) {
	s, k := pair(t)
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- s.Serve(ctx, func(r *Request) int64 {
			if r.Args[0] == 1 {
				<-release
			}
			return int64(r.Args[0]) * 10
		})
	}()
	k.Write(request(1, unix.SYS_READ, 4, -1, 0, 1))
	k.Write(request(2, unix.SYS_READ, 4, -1, 0, 2))
	b := make([]byte, replySize)
	k.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := k.Read(b); err != nil {
		t.Fatal(err)
	}
	if id, val := binary.LittleEndian.Uint64(b), int64(binary.LittleEndian.Uint64(b[8:])); id != 2 || val != 20 {
		t.Errorf("first reply = id %d val %d; want the unblocked request 2 with 20", id, val)
	}
	close(release)
	if _, err := k.Read(b); err != nil {
		t.Fatal(err)
	}
	if id := binary.LittleEndian.Uint64(b); id != 1 {
		t.Errorf("second reply for %d, want 1", id)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Serve after cancel = %v, want context.Canceled", err)
	}
}

// ServeWith answers the requests its inline function selects on the
// serving goroutine, in the order they came, and the others as Serve does.
func TestServeWithInline(t *testing.T) {
	s, k := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var order []uint64 // appended by inline calls only, which run one at a time
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.ServeWith(ctx, func(r *Request) int64 {
			if !r.Nonblock {
				<-release // a blocking call: must not hold up the rest
				return 0
			}
			order = append(order, r.ID)
			return int64(r.ID)
		}, func(r *Request) bool { return r.Nonblock })
	}()
	k.Write(append(append(request(1, unix.SYS_READ, 4, -1, 0), request(2, unix.SYS_READ, 4, -1, flagNonblock)...),
		request(3, unix.SYS_WRITE, 4, -1, flagNonblock)...))
	b := make([]byte, replySize)
	for _, want := range []uint64{2, 3} {
		k.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := k.Read(b); err != nil {
			t.Fatalf("waiting for the reply to %d: %v", want, err)
		}
		if id := binary.LittleEndian.Uint64(b); id != want {
			t.Errorf("reply for %d, want %d (inline requests in order, the blocked one later)", id, want)
		}
	}
	close(release)
	k.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := k.Read(b); err != nil || binary.LittleEndian.Uint64(b) != 1 {
		t.Errorf("last reply = %d, %v; want the blocking request 1", binary.LittleEndian.Uint64(b), err)
	}
	cancel()
	<-done
	if d := cmp.Diff([]uint64{2, 3}, order); d != "" {
		t.Errorf("inline order (-want +got):\n%s", d)
	}
}

func TestErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int64
	}{
		{nil, 0},
		{unix.ENOSPC, -int64(unix.ENOSPC)},
		{&os.PathError{Op: "read", Path: "x", Err: unix.EBADF}, -int64(unix.EBADF)},
		{context.Canceled, -int64(unix.EIO)},
	} {
		if got := Errno(tc.err); got != tc.want {
			t.Errorf("Errno(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestAfterPath(t *testing.T) {
	for _, tt := range []struct {
		sysno uintptr
		want  uintptr
	}{
		{unix.SYS_OPEN, 11}, {unix.SYS_STAT, 11}, {unix.SYS_LSTAT, 11}, {unix.SYS_ACCESS, 11},
		{unix.SYS_OPENAT, 22}, {unix.SYS_NEWFSTATAT, 22}, {unix.SYS_FACCESSAT, 22}, {unix.SYS_FACCESSAT2, 22},
	} {
		r := Request{Sysno: tt.sysno, Args: [6]uintptr{0, 11, 22, 33}}
		if got := r.AfterPath(); got != tt.want {
			t.Errorf("system call %d: AfterPath = %d, want %d", tt.sysno, got, tt.want)
		}
	}
}

package vchan_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/vchan/host"
)

const (
	serverDom vchan.DomID = 0
	clientDom vchan.DomID = 7
	testPort              = 512
)

// pair sets up a server in serverDom and a client in clientDom over one
// emulated hypervisor, and closes both when the test ends.
func pair(t testing.TB, readMin, writeMin int) (hv *host.Hypervisor, srv, cli *vchan.Conn) {
	t.Helper()
	hv = host.New()
	srv, err := vchan.Listen(hv.Platform(serverDom), clientDom, testPort, readMin, writeMin)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err = vchan.Dial(ctx, hv.Platform(clientDom), serverDom, testPort)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		srv.Close()
		cli.Close()
	})
	return hv, srv, cli
}

// ringCases are the ring geometries the end-to-end tests run over: both
// in-page layouts, single pages, and multi-page rings.
var ringCases = []struct {
	name            string
	readMin, writeM int
	wantRead, wantW int // server's read and write ring sizes
}{
	{"order10-11", 1024, 2048, 1024, 2048},
	{"order11-10", 2048, 1024, 2048, 1024},
	{"order12-12", 4096, 4096, 4096, 4096},
	{"order16-13", 65536, 8192, 65536, 8192},
	{"order11-20", 2000, 1 << 20, 2048, 1 << 20},
}

func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestRingSizes(t *testing.T) {
	for _, rc := range ringCases {
		t.Run(rc.name, func(t *testing.T) {
			_, srv, cli := pair(t, rc.readMin, rc.writeM)
			type sizes struct{ SrvRead, SrvWrite, CliRead, CliWrite int }
			var got sizes
			got.SrvRead, got.SrvWrite = srv.RingSizes()
			got.CliRead, got.CliWrite = cli.RingSizes()
			want := sizes{rc.wantRead, rc.wantW, rc.wantW, rc.wantRead}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ring sizes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTransfer sends messages of many sizes each way, one after the other,
// so the indices wrap at every possible phase.
func TestTransfer(t *testing.T) {
	sizes := []int{1, 2, 7, 1000, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 70000}
	for _, rc := range ringCases {
		t.Run(rc.name, func(t *testing.T) {
			_, srv, cli := pair(t, rc.readMin, rc.writeM)
			for dir, ends := range map[string][2]*vchan.Conn{"client-to-server": {cli, srv}, "server-to-client": {srv, cli}} {
				w, r := ends[0], ends[1]
				for i, n := range sizes {
					msg := pattern(n, uint64(i))
					errc := make(chan error, 1)
					go func() {
						_, err := w.Write(msg)
						errc <- err
					}()
					got := make([]byte, n)
					if _, err := io.ReadFull(r, got); err != nil {
						t.Fatalf("%s: read %d bytes: %v", dir, n, err)
					}
					if err := <-errc; err != nil {
						t.Fatalf("%s: write %d bytes: %v", dir, n, err)
					}
					if !bytes.Equal(msg, got) {
						t.Fatalf("%s: %d-byte message corrupted", dir, n)
					}
				}
			}
		})
	}
}

// stream writes total bytes of a pseudo-random stream in random-sized
// chunks and returns its checksum.
func stream(w io.Writer, total int, seed uint64) ([32]byte, error) {
	r := rand.New(rand.NewPCG(seed, 2))
	h := sha256.New()
	buf := make([]byte, 100000)
	for total > 0 {
		n := min(total, 1+r.IntN(len(buf)))
		for i := range buf[:n] {
			buf[i] = byte(r.Uint32())
		}
		h.Write(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return [32]byte{}, err
		}
		total -= n
	}
	return [32]byte(h.Sum(nil)), nil
}

// drain reads exactly total bytes in random-sized reads and returns their checksum.
func drain(rd io.Reader, total int, seed uint64) ([32]byte, error) {
	r := rand.New(rand.NewPCG(seed, 3))
	h := sha256.New()
	buf := make([]byte, 70000)
	for total > 0 {
		n, err := rd.Read(buf[:min(total, 1+r.IntN(len(buf)))])
		h.Write(buf[:n])
		total -= n
		if err != nil {
			return [32]byte{}, err
		}
	}
	return [32]byte(h.Sum(nil)), nil
}

// TestLargeConcurrent moves 16 MiB each way at the same time and compares
// checksums.
func TestLargeConcurrent(t *testing.T) {
	const total = 16 << 20
	cases := []struct {
		name            string
		readMin, writeM int
	}{
		{"order10-11", 1024, 2048},
		{"order16-16", 65536, 65536},
	}
	for _, rc := range cases {
		t.Run(rc.name, func(t *testing.T) {
			_, srv, cli := pair(t, rc.readMin, rc.writeM)
			type result struct {
				sum [32]byte
				err error
			}
			var wg sync.WaitGroup
			res := make([]result, 4)
			run := func(i int, f func() ([32]byte, error)) {
				wg.Go(func() {
					s, err := f()
					res[i] = result{s, err}
				})
			}
			run(0, func() ([32]byte, error) { return stream(cli, total, 1) })
			run(1, func() ([32]byte, error) { return drain(srv, total, 1) })
			run(2, func() ([32]byte, error) { return stream(srv, total, 2) })
			run(3, func() ([32]byte, error) { return drain(cli, total, 2) })
			wg.Wait()
			for i, r := range res {
				if r.err != nil {
					t.Fatalf("goroutine %d: %v", i, r.err)
				}
			}
			if res[0].sum != res[1].sum {
				t.Errorf("client-to-server checksum: sent %x, received %x", res[0].sum, res[1].sum)
			}
			if res[2].sum != res[3].sum {
				t.Errorf("server-to-client checksum: sent %x, received %x", res[2].sum, res[3].sum)
			}
		})
	}
}

// TestSlowReader makes the writer wait for a reader that takes its time,
// so the writer sleeps on a full ring again and again.
func TestSlowReader(t *testing.T) {
	_, srv, cli := pair(t, 1024, 2048)
	const total = 64 << 10
	msg := pattern(total, 9)
	errc := make(chan error, 1)
	go func() {
		_, err := srv.Write(msg)
		errc <- err
	}()
	// The writer fills the ring and must then wait for the reader.
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		if n, err := cli.DataReady(); err != nil || n == 2048 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the writer never filled the ring")
		}
	}
	got := make([]byte, 0, total)
	buf := make([]byte, 300)
	for len(got) < total {
		time.Sleep(100 * time.Microsecond)
		n, err := cli.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(msg, got) {
		t.Error("data corrupted")
	}
}

// TestReadReturnsWhatIsThere checks the partial-read semantics: Read
// returns the bytes available, not len(p).
func TestReadReturnsWhatIsThere(t *testing.T) {
	_, srv, cli := pair(t, 1024, 2048)
	if _, err := cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := srv.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Errorf("Read = %q, %v; want \"hello\", nil", buf[:n], err)
	}
	if n, err := srv.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
}

func TestSendRecv(t *testing.T) {
	_, srv, cli := pair(t, 1024, 2048)
	if err := cli.Send(make([]byte, 1025)); !errors.Is(err, vchan.ErrTooLarge) {
		t.Errorf("Send larger than the ring: %v, want ErrTooLarge", err)
	}
	if err := srv.Recv(make([]byte, 1025)); !errors.Is(err, vchan.ErrTooLarge) {
		t.Errorf("Recv larger than the ring: %v, want ErrTooLarge", err)
	}
	// Recv waits for the whole message even when part of it is there.
	got := make([]byte, 600)
	done := make(chan error, 1)
	go func() { done <- srv.Recv(got) }()
	msg := pattern(600, 3)
	if _, err := cli.Write(msg[:300]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("Recv returned (%v) with half the message in the ring", err)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := cli.Write(msg[300:]); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(msg, got) {
		t.Error("Recv data corrupted")
	}
	// Send waits until the whole message fits: fill 1000 of 1024 bytes,
	// then a 100-byte Send must wait for the reader.
	if err := cli.Send(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- cli.Send(msg[:100]) }()
	select {
	case err := <-sent:
		t.Fatalf("Send returned (%v) without room for the message", err)
	case <-time.After(20 * time.Millisecond):
	}
	if n, err := srv.DataReady(); n != 1000 || err != nil {
		t.Errorf("DataReady = %d, %v while Send waits; want 1000 (no partial message)", n, err)
	}
	if err := srv.Recv(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := srv.Recv(got[:100]); err != nil || !bytes.Equal(got[:100], msg[:100]) {
		t.Errorf("second message: %v, equal %v", err, bytes.Equal(got[:100], msg[:100]))
	}
}

func TestServerWritesBeforeClientAttaches(t *testing.T) {
	hv := host.New()
	srv, err := vchan.Listen(hv.Platform(serverDom), clientDom, testPort, 1024, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if st, err := srv.State(); st != vchan.LiveWaiting || err != nil {
		t.Errorf("server State before Dial = %v, %v; want waiting", st, err)
	}
	msg := pattern(2048, 4)
	if _, err := srv.Write(msg); err != nil {
		t.Fatal(err)
	}
	cli, err := vchan.Dial(context.Background(), hv.Platform(clientDom), serverDom, testPort)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(cli, got); err != nil || !bytes.Equal(msg, got) {
		t.Errorf("read early data: %v, equal %v", err, bytes.Equal(msg, got))
	}
	if st, err := srv.State(); st != vchan.LiveConnected || err != nil {
		t.Errorf("server State after Dial = %v, %v; want connected", st, err)
	}
}

func TestWaitConnectedWithdrawsXenstore(t *testing.T) {
	hv := host.New()
	srv, err := vchan.Listen(hv.Platform(serverDom), clientDom, testPort, 4096, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	wantKeys := []string{"/local/domain/0/data/vchan/7/512/event-channel", "/local/domain/0/data/vchan/7/512/ring-ref"}
	if diff := cmp.Diff(wantKeys, hv.Usage(serverDom).Keys); diff != "" {
		t.Errorf("published keys (-want +got):\n%s", diff)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := srv.WaitConnected(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitConnected without a client: %v, want deadline exceeded", err)
	}
	connected := make(chan error, 1)
	go func() { connected <- srv.WaitConnected(context.Background()) }()
	cli, err := vchan.Dial(context.Background(), hv.Platform(clientDom), serverDom, testPort)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := <-connected; err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	if keys := hv.Usage(serverDom).Keys; len(keys) != 0 {
		t.Errorf("keys left after the client attached: %v", keys)
	}
}

func TestDialWaitsForServer(t *testing.T) {
	hv := host.New()
	dialed := make(chan error, 1)
	var cli *vchan.Conn
	go func() {
		var err error
		cli, err = vchan.Dial(context.Background(), hv.Platform(clientDom), serverDom, testPort)
		dialed <- err
	}()
	time.Sleep(5 * time.Millisecond)
	srv, err := vchan.Listen(hv.Platform(serverDom), clientDom, testPort, 1024, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := <-dialed; err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer cli.Close()
	if _, err := cli.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestDialFailures(t *testing.T) {
	hv := host.New()
	srv, err := vchan.Listen(hv.Platform(serverDom), clientDom, testPort, 1024, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tests := []struct {
		name   string
		self   vchan.DomID
		server vchan.DomID
		port   int
	}{
		{"loopback", serverDom, serverDom, testPort},
		{"another domain cannot see the entries", clientDom + 1, serverDom, testPort},
		{"no server on that port", clientDom, serverDom, testPort + 1},
		{"negative port", clientDom, serverDom, -1},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		c, err := vchan.Dial(ctx, hv.Platform(tt.self), tt.server, tt.port)
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s: Dial succeeded", tt.name)
		}
	}
}

// TestCloseAndCleanup closes from either side: the other side reads what
// was sent before and then EOF, its writes fail, and after both close
// neither domain holds grants, mappings, ports or keys.
func TestCloseAndCleanup(t *testing.T) {
	for _, rc := range ringCases {
		for _, closer := range []string{"client", "server"} {
			t.Run(rc.name+"/"+closer+" closes", func(t *testing.T) {
				hv, srv, cli := pair(t, rc.readMin, rc.writeM)
				first, other := cli, srv
				if closer == "server" {
					first, other = srv, cli
				}
				if _, err := first.Write([]byte("last words")); err != nil {
					t.Fatal(err)
				}
				if err := first.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				got, err := io.ReadAll(other)
				if err != nil || string(got) != "last words" {
					t.Errorf("ReadAll after peer close = %q, %v; want \"last words\", nil", got, err)
				}
				if st, err := other.State(); st != vchan.LiveExited || err != nil {
					t.Errorf("State = %v, %v; want exited", st, err)
				}
				if _, err := other.Write([]byte("x")); !errors.Is(err, vchan.ErrPeerClosed) {
					t.Errorf("Write to closed peer: %v, want ErrPeerClosed", err)
				}
				if _, err := first.Read(make([]byte, 1)); !errors.Is(err, vchan.ErrClosed) {
					t.Errorf("Read after Close: %v, want ErrClosed", err)
				}
				if err := other.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if err := other.Close(); err != nil {
					t.Errorf("repeated Close: %v", err)
				}
				for _, d := range []vchan.DomID{serverDom, clientDom} {
					if diff := cmp.Diff(host.Usage{}, hv.Usage(d)); diff != "" {
						t.Errorf("domain %d still holds (-want +got):\n%s", d, diff)
					}
				}
			})
		}
	}
}

// TestCloseWakesBlocked checks that Close wakes a local Read and a local
// Write that are waiting, and that the peer's close wakes them too.
func TestCloseWakesBlocked(t *testing.T) {
	tests := []struct {
		name      string
		local     bool // close the blocked end itself, else its peer
		op        string
		wantRead  error
		wantWrite error
	}{
		{name: "local close wakes read", local: true, op: "read", wantRead: vchan.ErrClosed},
		{name: "local close wakes write", local: true, op: "write", wantWrite: vchan.ErrClosed},
		{name: "peer close wakes read", op: "read", wantRead: io.EOF},
		{name: "peer close wakes write", op: "write", wantWrite: vchan.ErrPeerClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv, cli := pair(t, 1024, 2048)
			done := make(chan error, 1)
			go func() {
				if tt.op == "read" {
					_, err := srv.Read(make([]byte, 10))
					done <- err
				} else {
					_, err := srv.Write(make([]byte, 5000)) // more than the 2 KiB ring
					done <- err
				}
			}()
			select {
			case err := <-done:
				t.Fatalf("%s returned (%v) before the close", tt.op, err)
			case <-time.After(10 * time.Millisecond):
			}
			closer := cli
			if tt.local {
				closer = srv
			}
			closer.Close()
			select {
			case err := <-done:
				want := tt.wantRead
				if tt.op == "write" {
					want = tt.wantWrite
				}
				if !errors.Is(err, want) {
					t.Errorf("%s after close: %v, want %v", tt.op, err, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s still blocked after close", tt.op)
			}
		})
	}
}

// TestPeerGone destroys the client's domain without a clean close: the
// server's blocked Read must return instead of waiting forever.
func TestPeerGone(t *testing.T) {
	hv, srv, _ := pair(t, 1024, 2048)
	done := make(chan error, 1)
	go func() {
		_, err := srv.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(5 * time.Millisecond)
	hv.Destroy(clientDom)
	select {
	case err := <-done:
		if !errors.Is(err, vchan.ErrPeerGone) {
			t.Errorf("Read after peer domain died: %v, want ErrPeerGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after the peer domain died")
	}
	if _, err := srv.Write([]byte("x")); !errors.Is(err, vchan.ErrPeerGone) {
		t.Errorf("Write after peer domain died: %v, want ErrPeerGone", err)
	}
}

// TestDiag: the report names the bytes left unread in each ring and the
// notification requests, and still answers after Close unmapped the page.
func TestDiag(t *testing.T) {
	_, srv, cli := pair(t, 1024, 2048)
	if _, err := cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// The client's ring to the server is the left one: 5 bytes unread.
	want := "in (right) prod 0 cons 0, out (left) prod 5 cons 0; live own 1 peer 1"
	if d := cli.Diag(); !strings.Contains(d, want) {
		t.Errorf("client Diag = %q, want it to contain %q", d, want)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		cli.Write([]byte("!"))
	}()
	buf := make([]byte, 10)
	if _, err := io.ReadFull(srv, buf[:6]); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	d := srv.Diag()
	for _, want := range []string{"in (left) prod 6 cons 6", "live own 0 peer 1", "notifications"} {
		if !strings.Contains(d, want) {
			t.Errorf("server Diag after Close = %q, want it to contain %q", d, want)
		}
	}
	if !regexp.MustCompile(`: [1-9]\d* events in`).MatchString(d) {
		t.Errorf("server Diag after Close = %q: the server slept for the '!' and took its event", d)
	}
}

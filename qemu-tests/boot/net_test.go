package boot_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder/qemu"
)

// syncBuffer is a console buffer QEMU writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a host TCP port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestHTTPVirtio boots examples/http, an ordinary net/http server, under
// QEMU with virtio-net and user networking, eth0 configured by QEMU's DHCP
// server, and talks to it from the host through a forwarded port: a page
// listing its interfaces (net.Interfaces, os.Hostname), a 1 MiB body
// echoed intact, 16 requests at once, and its own HTTP client fetching a
// page from a server on the host (10.0.2.2 is the host's loopback in
// QEMU's user network).
func TestHTTPVirtio(t *testing.T) {
	img := image(t, "./examples/http")
	if _, err := qemu.LookPath(qemu.Binary); err != nil {
		t.Fatalf("%v (run scripts/setup)", err)
	}
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host page for %s", r.URL.Path)
	}))
	defer host.Close()
	hostPort := host.Listener.Addr().(*net.TCPAddr).Port

	port := freePort(t)
	var console, qerr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := qemu.Run(ctx, qemu.Config{
			Image: img, Cmdline: "http", Memory: "256M",
			Net:    fmt.Sprintf("user,hostfwd=tcp:127.0.0.1:%d-:80", port),
			Stdout: &console, Stderr: &qerr, Timeout: 5 * time.Minute,
		})
		done <- err
	}()
	defer func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("console:\n%s\nqemu:\n%s", console.String(), qerr.String())
		}
	}()

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 60 * time.Second}
	get := func(url string) (int, string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	// Wait for the server: QEMU accepts on the forwarded port at once,
	// the guest answers once main listens.
	var page string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, body, err := get(base + "/")
		if err == nil && code == 200 {
			page = body
			break
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the guest stopped before answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer on %s/ within 3 minutes (last: %d %v)", base, code, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, want := range []string{"Hello from unikgo", "You are 10.0.2.2:", "lo  [127.0.0.1/8 ::1/128]", "eth0 52:54:00:12:34:56 [10.0.2.15/24"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}

	body := make([]byte, 1<<20)
	rand.Read(body)
	resp, err := client.Post(base+"/echo", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /echo: %v", err)
	}
	echoed, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /echo: status %d, %v", resp.StatusCode, err)
	}
	if sha256.Sum256(echoed) != sha256.Sum256(body) {
		t.Errorf("1 MiB echoed as %d bytes with another checksum", len(echoed))
	}

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("request %d", i)
			resp, err := client.Post(base+"/echo", "text/plain", strings.NewReader(msg))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != msg {
				errs <- fmt.Errorf("echo of %q came back as %q", msg, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent requests: %v", err)
	}

	code, got, err := get(fmt.Sprintf("%s/get?url=http://10.0.2.2:%d/from-guest", base, hostPort))
	if err != nil || code != 200 || got != "host page for /from-guest" {
		t.Errorf("the guest's client fetching from the host: %d %q %v", code, got, err)
	}
}

// TestPingVirtio: the guest pings QEMU's user-network gateway (10.0.2.2,
// which answers ICMP echo itself) from a ping socket, eth0 configured by
// DHCP, and checks each reply. The user network cannot reach the guest
// from the host, so this is ping's direction here; the Xen lab pings the
// guest from dom0 (TestHTTPPVH).
func TestPingVirtio(t *testing.T) {
	img := image(t, "./qemu-tests/boot/testdata/ping")
	var console, qerr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	exit, err := qemu.Run(ctx, qemu.Config{
		Image: img, Cmdline: "ping 10.0.2.2", Memory: "128M", Net: "user",
		Stdout: &console, Stderr: &qerr, Timeout: 5 * time.Minute,
	})
	out := console.String()
	if err != nil || exit.Status != 0 || exit.PoweredOff || !strings.Contains(out, "ping: 3 of 3 replies") {
		t.Fatalf("exit %+v, %v\nconsole:\n%s\nqemu:\n%s", exit, err, out, qerr.String())
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ping: reply") {
			t.Log(l)
		}
	}
}

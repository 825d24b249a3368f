// Command netpeer is the other end of the network tests and benchmarks: the
// same program runs in dom0 and the Linux baseline guest (built as a static
// Linux binary) and inside unikgo images.
//
//	netpeer get URL                 print the body (exit 1 unless 200)
//	netpeer gets URL N              N GETs at once: "N of N answered" (exit 1 unless all 200)
//	netpeer post URL FILE           POST FILE, print "sent SHA received SHA"
//	netpeer http ADDR TEXT          serve TEXT on every path
//	netpeer sink ADDR               accept; read each connection to EOF, answer the byte count
//	netpeer source ADDR             accept; read a count n, write n bytes
//	netpeer servers SINK SOURCE [STATS]  both at once; STATS answers each connection with
//	                                "heap H goroutines G" after a GC, then /proc/net/snmp
//	                                and /proc/net/netstat
//	netpeer stats ADDR              print a STATS answer
//	netpeer flood IFACE MAC N SEED  send N hostile raw frames to MAC on IFACE (Linux, AF_PACKET):
//	                                truncated, oversize and garbage IPv4, IPv6, ARP and other frames
//	netpeer send ADDR MiB           send MiB to a sink: "send: N bytes in T: R MiB/s"
//	netpeer recv ADDR MiB           fetch MiB from a source: "recv: N bytes in T: R MiB/s"
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "netpeer: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: netpeer get|post|http|sink|source|send|recv ADDR ...")
	}
	arg := func(i int) string {
		if len(os.Args) <= i {
			fail("%s: missing argument %d", os.Args[1], i-1)
		}
		return os.Args[i]
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	switch os.Args[1] {
	case "get":
		resp, err := client.Get(arg(2))
		if err != nil {
			fail("%v", err)
		}
		io.Copy(os.Stdout, resp.Body)
		if resp.StatusCode != 200 {
			fail("status %s", resp.Status)
		}
	case "gets":
		n, err := strconv.Atoi(arg(3))
		if err != nil || n <= 0 {
			fail("N %q: want a positive number", arg(3))
		}
		errs := make(chan error, n)
		for range n {
			go func() {
				resp, err := client.Get(arg(2))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				errs <- err
			}()
		}
		ok := 0
		for range n {
			if err := <-errs; err != nil {
				fmt.Fprintln(os.Stderr, "netpeer:", err)
			} else {
				ok++
			}
		}
		fmt.Printf("%d of %d answered\n", ok, n)
		if ok != n {
			os.Exit(1)
		}
	case "post":
		body, err := os.ReadFile(arg(3))
		if err != nil {
			fail("%v", err)
		}
		resp, err := client.Post(arg(2), "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			fail("%v", err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			fail("status %s, %v", resp.Status, err)
		}
		fmt.Printf("sent %x received %x\n", sha256.Sum256(body), sha256.Sum256(got))
	case "http":
		text := arg(3)
		fail("%v", http.ListenAndServe(arg(2), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, text)
		})))
	case "sink", "source":
		listen(arg(2), os.Args[1] == "sink")
		select {}
	case "servers":
		listen(arg(2), true)
		listen(arg(3), false)
		if len(os.Args) > 4 {
			stats(os.Args[4])
		}
		select {}
	case "stats":
		c, err := net.DialTimeout("tcp", arg(2), 30*time.Second)
		if err != nil {
			fail("%v", err)
		}
		io.Copy(os.Stdout, c)
	case "flood":
		n, err1 := strconv.Atoi(arg(4))
		seed, err2 := strconv.ParseInt(arg(5), 10, 64)
		mac, err3 := net.ParseMAC(arg(3))
		if err1 != nil || err2 != nil || err3 != nil {
			fail("flood IFACE MAC N SEED: bad arguments")
		}
		sent, refused, err := flood(arg(2), mac, n, seed)
		if err != nil {
			fail("flood: %v", err)
		}
		fmt.Printf("flood: %d frames sent, %d refused by the local kernel\n", sent, refused)
	case "send", "recv":
		mib, err := strconv.Atoi(arg(3))
		if err != nil || mib <= 0 {
			fail("MiB %q: want a positive number", arg(3))
		}
		n := int64(mib) << 20
		c, err := net.DialTimeout("tcp", arg(2), 30*time.Second)
		if err != nil {
			fail("%v", err)
		}
		// A guest that stops answering fails the transfer, not the lab.
		c.SetDeadline(time.Now().Add(5 * time.Minute))
		start := time.Now()
		var moved int64
		if os.Args[1] == "send" {
			moved, err = io.Copy(c, io.LimitReader(zeros{}, n))
			if err == nil {
				c.(*net.TCPConn).CloseWrite()
				var ack [8]byte
				if _, err = io.ReadFull(c, ack[:]); err == nil && int64(binary.BigEndian.Uint64(ack[:])) != n {
					err = fmt.Errorf("the sink counted %d bytes", binary.BigEndian.Uint64(ack[:]))
				}
			}
		} else {
			var req [8]byte
			binary.BigEndian.PutUint64(req[:], uint64(n))
			if _, err = c.Write(req[:]); err == nil {
				moved, err = io.Copy(io.Discard, c)
				if err == nil && moved != n {
					err = fmt.Errorf("got %d of %d bytes", moved, n)
				}
			}
		}
		d := time.Since(start)
		if err != nil {
			fail("%s: %v", os.Args[1], err)
		}
		fmt.Printf("%s: %d bytes in %v: %.2f MiB/s\n", os.Args[1], moved, d.Round(time.Millisecond), float64(moved)/(1<<20)/d.Seconds())
	default:
		fail("unknown command %q", os.Args[1])
	}
}

// listen serves sink or source connections on addr in the background.
func listen(addr string, sink bool) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail("%v", err)
	}
	what := "source"
	if sink {
		what = "sink"
	}
	fmt.Printf("netpeer: %s on %v\n", what, ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				fail("%v", err)
			}
			go serveConn(c, sink)
		}
	}()
}

// stats answers each connection on addr with the heap in use after a GC
// and the goroutine count, for leak checks.
func stats(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("netpeer: stats on %v\n", ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				fail("%v", err)
			}
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Fprintf(c, "heap %d goroutines %d\n", m.HeapInuse, runtime.NumGoroutine())
			// The network stack's counters, as Linux shows them.
			for _, f := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
				if b, err := os.ReadFile(f); err == nil {
					c.Write(b)
				}
			}
			c.Close()
		}
	}()
}

// serveConn is one sink or source connection.
func serveConn(c net.Conn, sink bool) {
	defer c.Close()
	if sink {
		n, _ := io.Copy(io.Discard, c)
		var ack [8]byte
		binary.BigEndian.PutUint64(ack[:], uint64(n))
		c.Write(ack[:])
		return
	}
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	io.Copy(c, io.LimitReader(zeros{}, int64(binary.BigEndian.Uint64(req[:]))))
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

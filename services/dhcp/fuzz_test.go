package dhcp

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the seed corpus in testdata/fuzz/FuzzParse")

// seedMessages are real-looking server replies and their truncations.
func seedMessages() map[string][]byte {
	offer := rawReply(0x3903f326, testMAC, testYI, leaseOpts(Offer)...)
	ack := rawReply(0x3903f326, testMAC, testYI, leaseOpts(Ack)...)
	nak := rawReply(0x3903f326, testMAC, netip4(0, 0, 0, 0), 53, 1, 6, 54, 4, 192, 168, 1, 1, 56, 9, 'w', 'r', 'o', 'n', 'g', ' ', 'n', 'e', 't', 255)
	over := rawReply(7, testMAC, testYI, 53, 1, 5, 52, 1, 3, 255)
	copy(over[offFile:], []byte{6, 4, 1, 1, 1, 1, 255})
	copy(over[offSName:], []byte{15, 1, 'x', 255})
	split := rawReply(8, testMAC, testYI, 53, 1, 2, 6, 4, 1, 1, 1, 1, 6, 4, 2, 2, 2, 2, 255)
	return map[string][]byte{
		"offer":           offer,
		"ack":             ack,
		"nak":             nak,
		"overload":        over,
		"split":           split,
		"offer-truncated": offer[:len(offer)-10],
		"ack-header-only": ack[:HeaderLen],
		"ack-no-cookie":   ack[:HeaderLen-1],
	}
}

func netip4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

func TestWriteCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seedMessages() {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	// The seeds are also in testdata/fuzz/FuzzParse, where the fuzzer
	// adds what it finds.
	for _, b := range seedMessages() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if m != nil {
				t.Fatal("message and error")
			}
			return
		}
		// Allocation is bounded by the input: the options hold no more
		// bytes than the message carried.
		n := 0
		for _, o := range m.Options {
			n += len(o.Data)
			switch o.Code {
			case OptPad, OptEnd, OptOverload:
				t.Fatalf("option %d kept", o.Code)
			}
		}
		if n > len(b) {
			t.Fatalf("%d bytes of options from a %d-byte message", n, len(b))
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed message: %v", err)
		}
		// Splitting into 255-byte parts adds at most 2 bytes per 255.
		if len(out) > max(minMessageLen, len(b)+2*len(b)/255+2*256) {
			t.Fatalf("Marshal grew %d bytes to %d", len(b), len(out))
		}
		checkRoundTrip(t, m)
	})
}

// sinkConn swallows what the client sends.
type sinkConn struct{}

func (sinkConn) Send(context.Context, []byte, netip.Addr) error { return nil }
func (sinkConn) Recv(ctx context.Context, _ []byte) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// FuzzHandle feeds parsed messages to a client in each state that waits
// for replies, with the xid made to match so that the options are
// looked at, and checks the lease it may take.
func FuzzHandle(f *testing.F) {
	for _, b := range seedMessages() {
		f.Add(b, uint8(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		c, err := New(sinkConn{}, Config{HWAddr: testMAC[:], Clock: newFakeClock()})
		if err != nil {
			t.Fatal(err)
		}
		c.xid = m.Xid
		ack, _ := Parse(rawReply(m.Xid, testMAC, testYI, leaseOpts(Ack)...))
		switch which % 4 {
		case 0:
			c.state = Selecting
		case 1:
			c.state = Requesting
			c.offer, _ = Parse(rawReply(m.Xid, testMAC, testYI, leaseOpts(Offer)...))
		case 2, 3:
			c.lease, _ = leaseFrom(ack, t0)
			c.state = Renewing + State(which%4-2)
		}
		before := c.state
		c.handle(context.Background(), m)
		if c.state != Bound || before == Selecting {
			return
		}
		l := c.lease
		if !usable(l.Addr.Addr()) || l.Addr.Bits() > 32 || !l.Server.IsValid() {
			t.Fatalf("bound to %+v", l)
		}
		if l.Duration < minLease || l.T1 > l.T2 || l.T2 > l.Duration || l.T1 < 0 {
			t.Fatalf("lease times %v %v %v", l.Duration, l.T1, l.T2)
		}
		for _, a := range l.DNS {
			if !usable(a) {
				t.Fatalf("DNS %v", a)
			}
		}
		if c.wake.IsZero() != (l.T1 == Infinite) {
			t.Fatalf("wake %v for T1 %v", c.wake, l.T1)
		}
	})
}

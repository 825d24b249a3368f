package xenstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

// raw builds a message from parts without any checks, as a hostile
// server would.
func raw(typ, reqID, txID, length uint32, payload string) []byte {
	b := make([]byte, 16, 16+len(payload))
	binary.LittleEndian.PutUint32(b, typ)
	binary.LittleEndian.PutUint32(b[4:], reqID)
	binary.LittleEndian.PutUint32(b[8:], txID)
	binary.LittleEndian.PutUint32(b[12:], length)
	return append(b, payload...)
}

// reply answers req with type and payload, correct length.
func reply(req xenstore.Message, typ xenstore.MsgType, payload string) []byte {
	return raw(uint32(typ), req.ReqID, req.TxID, uint32(len(payload)), payload)
}

// scripted returns a client whose server answers each request with
// whatever respond returns (nil: no answer). The server's received
// requests are sent on the returned channel.
func scripted(t *testing.T, respond func(req xenstore.Message) []byte) (*xenstore.Client, <-chan xenstore.Message) {
	a, b := net.Pipe()
	reqs := make(chan xenstore.Message, 100)
	go func() {
		defer b.Close()
		for {
			m, err := xenstore.ReadMessage(b)
			if err != nil {
				return
			}
			select {
			case reqs <- m:
			default:
			}
			if out := respond(m); out != nil {
				if _, err := b.Write(out); err != nil {
					return
				}
			}
		}
	}()
	c := xenstore.NewClient(a)
	t.Cleanup(func() { c.Close() })
	return c, reqs
}

func TestHostileReplies(t *testing.T) {
	tests := []struct {
		name    string
		respond func(req xenstore.Message) []byte
		op      func(ctx context.Context, c *xenstore.Client) error
		fatal   bool // the client must shut down
	}{
		{"wrong req_id", func(r xenstore.Message) []byte {
			r.ReqID += 1000
			return reply(r, r.Type, "v")
		}, opRead, true},
		{"oversize len", func(r xenstore.Message) []byte {
			return raw(uint32(r.Type), r.ReqID, 0, 4097, strings.Repeat("x", 4097))
		}, opRead, true},
		{"huge len without data", func(r xenstore.Message) []byte {
			return raw(uint32(r.Type), r.ReqID, 0, 0xfffffff0, "")
		}, opRead, true},
		{"garbage type", func(r xenstore.Message) []byte {
			return raw(0x41414141, r.ReqID, 0, 0, "")
		}, opRead, true},
		{"mismatched type", func(r xenstore.Message) []byte {
			return reply(r, xenstore.TypeWrite, "OK\x00")
		}, opRead, true},
		{"malformed error", func(r xenstore.Message) []byte {
			return reply(r, xenstore.TypeError, "not an errno\x00")
		}, opRead, false},
		{"error unterminated garbage", func(r xenstore.Message) []byte {
			return reply(r, xenstore.TypeError, "ENOENT\x00\xff\xfe")
		}, opRead, false},
		{"write ack garbage", func(r xenstore.Message) []byte {
			return reply(r, r.Type, "NOPE\x00")
		}, func(ctx context.Context, c *xenstore.Client) error { return c.Write(ctx, "/a", "b") }, false},
		{"directory name with slash", func(r xenstore.Message) []byte {
			return reply(r, r.Type, "ok\x00a/b\x00")
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.Directory(ctx, "/a"); return err }, false},
		{"directory unterminated", func(r xenstore.Message) []byte {
			return reply(r, r.Type, "ok\x00b")
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.Directory(ctx, "/a"); return err }, false},
		{"perms garbage", func(r xenstore.Message) []byte {
			return reply(r, r.Type, "q0\x00")
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.GetPerms(ctx, "/a"); return err }, false},
		{"transaction id zero", func(r xenstore.Message) []byte {
			return reply(r, r.Type, "0\x00")
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.Begin(ctx); return err }, false},
		{"transaction id garbage", func(r xenstore.Message) []byte {
			return reply(r, r.Type, "12abc\x00")
		}, func(ctx context.Context, c *xenstore.Client) error {
			return c.Transaction(ctx, func(*xenstore.Tx) error { return nil })
		}, false},
		{"domain path relative", func(r xenstore.Message) []byte {
			return reply(r, r.Type, "local/domain/1\x00")
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.GetDomainPath(ctx, 1); return err }, false},
		{"domain path with junk", func(r xenstore.Message) []byte {
			return reply(r, r.Type, "/local/domain/1\x00/x\x00")
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.GetDomainPath(ctx, 1); return err }, false},
		{"directory part without progress", func(r xenstore.Message) []byte {
			if r.Type == xenstore.TypeDirectory {
				return reply(r, xenstore.TypeError, "E2BIG\x00")
			}
			return reply(r, r.Type, "1\x00")
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.Directory(ctx, "/a"); return err }, false},
		{"directory part without gencnt", func(r xenstore.Message) []byte {
			if r.Type == xenstore.TypeDirectory {
				return reply(r, xenstore.TypeError, "E2BIG\x00")
			}
			return reply(r, r.Type, "")
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.Directory(ctx, "/a"); return err }, false},
		{"directory part endless", func(r xenstore.Message) []byte {
			if r.Type == xenstore.TypeDirectory {
				return reply(r, xenstore.TypeError, "E2BIG\x00")
			}
			return reply(r, r.Type, "1\x00"+strings.Repeat("name\x00", 800))
		}, func(ctx context.Context, c *xenstore.Client) error { _, err := c.Directory(ctx, "/a"); return err }, false},
		{"watch event with one string", func(r xenstore.Message) []byte {
			return raw(uint32(xenstore.TypeWatchEvent), 0, 0, 5, "/abc\x00")
		}, opRead, true},
		{"watch event with bad path", func(r xenstore.Message) []byte {
			return raw(uint32(xenstore.TypeWatchEvent), 0, 0, 8, "/a b\x00t\x00\x00"[:8])
		}, opRead, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			c, _ := scripted(t, tc.respond)
			err := tc.op(ctx, c)
			if err == nil {
				t.Fatal("hostile reply accepted")
			}
			if !errors.Is(err, xenstore.ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("err = %v, want a protocol error", err)
			}
			if tc.fatal {
				select {
				case <-c.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("client still running after a fatal violation")
				}
				if _, err := c.Read(ctx, "/x"); err == nil {
					t.Error("Read after fatal violation succeeded")
				}
			} else if c.Err() != nil {
				t.Errorf("a malformed payload shut the client down: %v", c.Err())
			}
		})
	}
}

func opRead(ctx context.Context, c *xenstore.Client) error {
	_, err := c.Read(ctx, "/a")
	return err
}

func TestUnknownWatchTokenIgnored(t *testing.T) {
	ctx := testCtx(t)
	c, _ := scripted(t, func(r xenstore.Message) []byte {
		ev := raw(uint32(xenstore.TypeWatchEvent), 0, 0, 8, "/a\x00nope\x00")
		return append(ev, reply(r, r.Type, "value")...)
	})
	v, err := c.Read(ctx, "/a")
	if err != nil || v != "value" {
		t.Fatalf("Read = %q, %v", v, err)
	}
	if c.Err() != nil {
		t.Error(c.Err())
	}
}

func TestDirectoryPartGenerationChanges(t *testing.T) {
	ctx := testCtx(t)
	gen := 0
	c, _ := scripted(t, func(r xenstore.Message) []byte {
		if r.Type == xenstore.TypeDirectory {
			return reply(r, xenstore.TypeError, "E2BIG\x00")
		}
		gen++ // every part from a different generation
		return reply(r, r.Type, string(rune('0'+gen%10))+"\x00abc\x00")
	})
	_, err := c.Directory(ctx, "/a")
	if !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("err = %v, want EAGAIN after bounded retries", err)
	}
}

func TestAbandonedTransactionIsAborted(t *testing.T) {
	ctx := testCtx(t)
	release := make(chan struct{})
	c, reqs := scripted(t, func(r xenstore.Message) []byte {
		if r.Type == xenstore.TypeTransactionStart {
			<-release // answer only after the caller gave up
			return reply(r, r.Type, "77\x00")
		}
		return reply(r, r.Type, "OK\x00")
	})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.Begin(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Begin = %v", err)
	}
	close(release)
	for {
		select {
		case m := <-reqs:
			if m.Type == xenstore.TypeTransactionEnd {
				if m.TxID != 77 || string(m.Payload) != "F\x00" {
					t.Errorf("late end: tx %d payload %q", m.TxID, m.Payload)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("leaked transaction never ended")
		}
	}
}

func TestServerHangsUp(t *testing.T) {
	ctx := testCtx(t)
	a, b := net.Pipe()
	go func() {
		xenstore.ReadMessage(b)
		b.Write(raw(2, 1, 0, 10, "abc")) // a partial reply, then gone
		b.Close()
	}()
	c := xenstore.NewClient(a)
	defer c.Close()
	_, err := c.Read(ctx, "/a")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v, want unexpected EOF", err)
	}
	if !errors.Is(c.Err(), io.ErrUnexpectedEOF) {
		t.Errorf("client Err = %v", c.Err())
	}
}

func TestCorruptedRingIndicesFailClient(t *testing.T) {
	ctx := testCtx(t)
	srv := xenstoretest.NewServer()
	r := srv.NewRing(4)
	defer r.Close()
	c := xenstore.NewClient(xenstore.NewRingConn(r.Page, r.GuestNotify, r.GuestWait))
	defer c.Close()
	if err := c.Write(ctx, "/x", "1"); err != nil {
		t.Fatal(err)
	}
	// Stop the server, then claim 2000 bytes of response.
	r.Close()
	rspCons := binary.LittleEndian.Uint32(r.Page[xenstore.RingRspConsOff:])
	(*atomic.Uint32)(unsafe.Pointer(&r.Page[xenstore.RingRspProdOff])).Store(rspCons + 2000)
	r.NotifyGuest()
	_, err := c.Read(ctx, "/x")
	if err == nil {
		// The request may have raced the corruption; the client must fail soon.
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
		}
		err = c.Err()
	}
	if !errors.Is(err, xenstore.ErrProtocol) {
		t.Errorf("err = %v, want ErrProtocol", err)
	}
}

func TestAbandonedWatchIsRemoved(t *testing.T) {
	ctx := testCtx(t)
	release := make(chan struct{})
	c, reqs := scripted(t, func(r xenstore.Message) []byte {
		if r.Type == xenstore.TypeWatch {
			<-release
		}
		return reply(r, r.Type, "OK\x00")
	})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.Watch(short, "/w", "tok"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch = %v", err)
	}
	close(release)
	for {
		select {
		case m := <-reqs:
			if m.Type == xenstore.TypeUnwatch {
				if string(m.Payload) != "/w\x00tok\x00" {
					t.Errorf("late unwatch payload %q", m.Payload)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("abandoned watch never removed")
		}
	}
}

package qrexec

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func FuzzHeader(f *testing.F) {
	f.Add(cat(le32(0x200), le32(40)))
	f.Add(cat(le32(0x300), le32(4)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		if err := h.UnmarshalBinary(b); err != nil {
			if len(b) == HeaderSize {
				t.Fatalf("8-byte header refused: %v", err)
			}
			return
		}
		out, _ := h.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip %x -> %x", b, out)
		}
	})
}

func FuzzExecParams(f *testing.F) {
	f.Add(execPayload(0, 513, "user:QUBESRPC qubes.Foo+arg dom0"))
	f.Add(cat(le32(5), le32(1024), []byte("SOCKET7"), make([]byte, 25)))
	f.Add(cat(le32(1), le32(2), []byte("a\x00b")))
	f.Add(cat(le32(1), le32(2)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p ExecParams
		if err := p.UnmarshalBinary(b); err != nil {
			return
		}
		if strings.IndexByte(p.Cmdline, 0) >= 0 || len(p.Cmdline) > MaxCmdlineLen {
			t.Fatalf("accepted cmdline %q", p.Cmdline)
		}
		out, _ := p.MarshalBinary()
		var back ExecParams
		if err := back.UnmarshalBinary(out); err != nil || back != p {
			t.Fatalf("round trip %+v -> %+v, %v", p, back, err)
		}
	})
}

func FuzzPeerInfo(f *testing.F) {
	f.Add(le32(3))
	f.Add(le32(4))
	f.Add(le32(2))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		peer, use, err := DecodePeerInfo(b)
		if err != nil {
			return
		}
		if use < MinVersion || use > Version || use > peer {
			t.Fatalf("negotiated %d with peer %d", use, peer)
		}
	})
}

func FuzzServiceParams(f *testing.F) {
	ident := make([]byte, 32)
	copy(ident, "SOCKET12")
	f.Add(ident)
	f.Add(bytes.Repeat([]byte("a"), 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeServiceParams(b)
		if err == nil && checkIdent(s) != nil {
			t.Fatalf("accepted ident %q", s)
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	f.Add("user:QUBESRPC qubes.Foo+arg dom0")
	f.Add("DEFAULT:nogui:QUBESRPC qubes.USB+2-1 sys-usb name dom0")
	f.Add("root:ls -l")
	f.Add("user:QUBESRPC  x")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommand(s)
		if err != nil {
			return
		}
		if !strings.HasSuffix(s, c.Command) || strings.Contains(c.User, ":") {
			t.Fatalf("%q parsed as %+v", s, c)
		}
		if c.IsRPC && (c.Service == "" || CheckDomainName(c.Source) != nil || strings.ContainsAny(c.Service, " +") ||
			strings.Contains(c.Arg, " ") || len(c.Service) > maxServiceNameChars) {
			t.Fatalf("%q parsed as %+v", s, c)
		}
	})
}

// fixedRWC plays a fixed byte stream as the peer and swallows writes.
type fixedRWC struct{ r *bytes.Reader }

func (s fixedRWC) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s fixedRWC) Write(p []byte) (int, error) { return len(p), nil }
func (s fixedRWC) Close() error                { return nil }

// FuzzDataStream plays arbitrary bytes as the peer of a data connection,
// both as the caller of a service (read through stdinReader) and as a
// called service (read by runClientSide). Both must end, with an error or
// not, and never deliver more than a chunk per message.
func FuzzDataStream(f *testing.F) {
	f.Add(cat(le32(0x190), le32(3), []byte("abc"), le32(0x190), le32(0)))
	f.Add(cat(le32(0x191), le32(2), []byte("hi"), le32(0x192), le32(0), le32(0x191), le32(0), le32(0x193), le32(4), le32(1)))
	f.Add(cat(le32(0x190), le32(70000)))
	f.Add(cat(le32(0x193), le32(3), []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		sr := &stdinReader{c: &conn{rwc: fixedRWC{bytes.NewReader(b)}}, maxChunk: MaxChunk(4)}
		if n, err := io.Copy(io.Discard, sr); err == nil && n > int64(len(b)) {
			t.Fatalf("read %d stdin bytes from a %d-byte stream", n, len(b))
		}
		var out bytes.Buffer
		runClientSide(&conn{rwc: fixedRWC{bytes.NewReader(b)}}, 4, nil, &out, &out)
		if out.Len() > len(b) {
			t.Fatalf("wrote %d output bytes from a %d-byte stream", out.Len(), len(b))
		}
	})
}

// fixedDialer hands out data connections whose peer sends HELLO, a little
// stdin and EOF.
type fixedDialer struct{}

var fuzzDataStream = cat(le32(0x300), le32(4), le32(4), le32(0x190), le32(3), []byte("abc"), le32(0x190), le32(0))

func (fixedDialer) Dial(ctx context.Context, domain, port uint32) (io.ReadWriteCloser, error) {
	return fixedRWC{bytes.NewReader(fuzzDataStream)}, nil
}

func (fixedDialer) Listen(ctx context.Context, domain, port uint32) (io.ReadWriteCloser, error) {
	return fixedRWC{bytes.NewReader(fuzzDataStream)}, nil
}

// FuzzControlStream plays arbitrary bytes as dom0 on the control
// connection. Serve must return once the stream ends, with every request
// it started finished, and must not panic.
func FuzzControlStream(f *testing.F) {
	hello := cat(le32(0x300), le32(4), le32(4))
	msg := func(typ MsgType, p []byte) []byte { return cat(le32(uint32(typ)), le32(uint32(len(p))), p) }
	ident := make([]byte, 32)
	copy(ident, "CALL1")
	f.Add(hello)
	f.Add(cat(hello, msg(MsgExecCmdline, execPayload(0, 513, "user:QUBESRPC qubes.Echo dom0"))))
	f.Add(cat(hello, msg(MsgJustExec, execPayload(0, 514, "user:QUBESRPC qubes.Echo+a dom0")), msg(MsgExecCmdline, execPayload(0, 515, "user:ls"))))
	f.Add(cat(hello, msg(MsgServiceConnect, cat(le32(1), le32(2), ident)), msg(MsgServiceRefused, ident)))
	f.Add(cat(le32(0x300), le32(4), le32(3), msg(MsgExecCmdline, execPayload(0, 1, "nocolon"))))
	f.Add(cat(hello, le32(0x200), le32(0xffffff00)))
	f.Fuzz(func(t *testing.T, b []byte) {
		a := NewAgent(fixedDialer{})
		a.Handle("qubes.Echo", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
			io.Copy(stdout, stdin)
			return 0
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Serve(ctx, fixedRWC{bytes.NewReader(b)})
		if ctx.Err() != nil {
			t.Fatal("Serve did not finish a finite stream")
		}
	})
}

func FuzzTriggerParams(f *testing.F) {
	field := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	f.Add(true, cat(field("sys-net", 64), field("dom0", 64), field("CALL1", 32), []byte("qubes.X+y\x00")))
	f.Add(false, cat(field("dom0", 64), field("SOCKET5", 32), []byte("qubes.X\x00")))
	f.Add(false, cat(field("dom0", 64), field("A", 32), []byte("a\x00b\x00")))
	f.Fuzz(func(t *testing.T, v4 bool, b []byte) {
		typ, version := MsgTriggerService3, uint32(3)
		if v4 {
			typ, version = MsgTriggerService4, 4
		}
		p, err := DecodeTriggerParams(typ, b)
		if err != nil {
			return
		}
		gotType, out, err := p.Encode(version)
		if err != nil || gotType != typ {
			t.Fatalf("decoded %+v does not re-encode: %s %v", p, gotType, err)
		}
		back, err := DecodeTriggerParams(typ, out)
		if err != nil || back != p {
			t.Fatalf("round trip %+v -> %+v, %v", p, back, err)
		}
	})
}

// FuzzDaemonStream plays arbitrary bytes as a VM's agent against the
// dom0-side Daemon, whose policy allows one service.
func FuzzDaemonStream(f *testing.F) {
	field := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	msg := func(typ MsgType, p []byte) []byte { return cat(le32(uint32(typ)), le32(uint32(len(p))), p) }
	hello := cat(le32(0x300), le32(4), le32(4))
	f.Add(hello)
	f.Add(cat(hello, msg(MsgTriggerService4, cat(field("", 64), field("dom0", 64), field("CALL1", 32), []byte("qubes.Ok\x00")))))
	f.Add(cat(hello, msg(MsgTriggerService3, cat(field("dom0", 64), field("CALL2", 32), []byte("qubes.No\x00")))))
	f.Add(cat(hello, msg(MsgConnectionTerminated, cat(le32(0), le32(513)))))
	f.Add(cat(le32(0x300), le32(4), le32(3), msg(MsgTriggerService4, make([]byte, 170))))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDaemon(fixedDialer{})
		d.Policy = func(call TriggerParams) Handler {
			if call.Service != "qubes.Ok" {
				return nil
			}
			return func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
				io.Copy(stdout, stdin)
				return 0
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Serve(ctx, fixedRWC{bytes.NewReader(b)})
		if ctx.Err() != nil {
			t.Fatal("Serve did not finish a finite stream")
		}
	})
}

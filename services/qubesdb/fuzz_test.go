package qubesdb

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// streamRWC feeds fixed bytes as the peer's stream and swallows writes.
type streamRWC struct{ r *bytes.Reader }

func (s streamRWC) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s streamRWC) Write(p []byte) (int, error) { return len(p), nil }
func (s streamRWC) Close() error                { return nil }

func join(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func FuzzHeader(f *testing.F) {
	f.Add(rawHeader(2, "", 0))
	f.Add(rawHeader(1, "/qubes-ip", 10))
	f.Add(rawHeader(11, "/qubes-firewall/10.137.0.5/0000", 3071))
	f.Add(rawHeader(14, "/a", 0))
	f.Add(rawHeader(1, "/a b", 3072))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		if err := h.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted header %+v does not re-encode: %v", h, err)
		}
		var back Header
		if err := back.UnmarshalBinary(out); err != nil || back != h {
			t.Fatalf("round trip %+v -> %+v, %v", h, back, err)
		}
	})
}

// FuzzClientStream plays arbitrary bytes as dom0: Connect and the follow-up
// loop must end with an error or EOF, never panic or hang, and whatever
// the copy holds must be valid.
func FuzzClientStream(f *testing.F) {
	end := frame(RespMultiread, "", "")
	f.Add(end)
	f.Add(join(frame(RespMultiread, "/qubes-ip", "10.137.0.6"), frame(RespMultiread, "/e", ""), end))
	f.Add(join(end, frame(CmdWrite, "/qubes-firewall/10.137.0.5/0000", "action=drop"), frame(CmdWrite, "/qubes-firewall/10.137.0.5", ""), frame(CmdRm, "/qubes-firewall/", "")))
	f.Add(join(end, frame(CmdRm, "/missing", ""), frame(RespOK, "/x", "")))
	f.Add(join(frame(RespMultiread, "/a", "x\x00"), end))
	f.Add(join(end, rawHeader(1, "/a", 3000)))
	f.Fuzz(func(t *testing.T, stream []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := Connect(ctx, streamRWC{bytes.NewReader(stream)}, Options{MaxBytes: 64 << 10})
		if err != nil {
			return
		}
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("client did not finish a finite stream")
		}
		if c.Err() == nil {
			t.Fatal("Done closed with nil Err")
		}
		for _, e := range c.Multiread("") {
			if CheckKey(e.Path) != nil || CheckValue([]byte(e.Value)) != nil {
				t.Fatalf("invalid entry stored: %q=%q", e.Path, e.Value)
			}
		}
	})
}

// FuzzServerStream plays arbitrary bytes as the VM against the dom0 side.
func FuzzServerStream(f *testing.F) {
	f.Add(frame(CmdMultiread, "", ""))
	f.Add(join(frame(CmdMultiread, "", ""), frame(CmdWrite, "/qubes-vm-updateable", "True"), frame(CmdRm, "/qubes-vm-updateable", "")))
	f.Add(join(frame(CmdMultiread, "/qubes-", ""), frame(RespOK, "/a", ""), frame(CmdMultiread, "", "")))
	f.Add(join(frame(CmdRead, "/a", ""), frame(CmdList, "/", "")))
	f.Add(join(frame(CmdWrite, "/a", "x"), frame(CmdRm, "/", "")))
	f.Fuzz(func(t *testing.T, stream []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv := NewServer(Options{MaxBytes: 64 << 10})
		srv.Write(ctx, "/qubes-ip", "10.137.0.6")
		srv.Write(ctx, "/qubes-firewall/10.137.0.5/0000", "action=accept")
		srv.Serve(ctx, streamRWC{bytes.NewReader(stream)})
		if ctx.Err() != nil {
			t.Fatal("Serve did not finish a finite stream")
		}
		for _, e := range srv.Multiread("") {
			if CheckKey(e.Path) != nil || CheckValue([]byte(e.Value)) != nil {
				t.Fatalf("invalid entry stored: %q=%q", e.Path, e.Value)
			}
		}
	})
}

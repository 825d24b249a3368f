package xenstoretest_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/xenpv/xenstore"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenstoretest"
)

// rawConn speaks to the fake with hand-made messages, to pin down its
// wire behaviour independently of the client.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	done chan error
}

func dialRaw(t *testing.T, srv *xenstoretest.Server, dom xenstore.DomID) *rawConn {
	a, b := net.Pipe()
	r := &rawConn{t: t, conn: a, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(b, dom) }()
	t.Cleanup(func() { a.Close() })
	return r
}

func (r *rawConn) send(typ xenstore.MsgType, req, tx uint32, payload string) {
	r.t.Helper()
	b, err := xenstore.MarshalMessage(typ, req, tx, []byte(payload))
	if err != nil {
		r.t.Fatal(err)
	}
	r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) recv() xenstore.Message {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := xenstore.ReadMessage(r.conn)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

type msg struct {
	Type    xenstore.MsgType
	ReqID   uint32
	TxID    uint32
	Payload string
}

func simple(m xenstore.Message) msg {
	return msg{m.Type, m.ReqID, m.TxID, string(m.Payload)}
}

func TestWireBehaviour(t *testing.T) {
	srv := xenstoretest.NewServer()
	r := dialRaw(t, srv, 9)
	steps := []struct {
		name string
		typ  xenstore.MsgType
		tx   uint32
		in   string
		want []msg
	}{
		{"write relative", xenstore.TypeWrite, 0, "a/b\x00v", []msg{{xenstore.TypeWrite, 1, 0, "OK\x00"}}},
		{"read absolute", xenstore.TypeRead, 0, "/local/domain/9/a/b\x00", []msg{{xenstore.TypeRead, 2, 0, "v"}}},
		{"read missing", xenstore.TypeRead, 0, "/nope\x00", []msg{{xenstore.TypeError, 3, 0, "ENOENT\x00"}}},
		{"bad path", xenstore.TypeRead, 0, "/a//b\x00", []msg{{xenstore.TypeError, 4, 0, "EINVAL\x00"}}},
		{"directory", xenstore.TypeDirectory, 0, "a\x00", []msg{{xenstore.TypeDirectory, 5, 0, "b\x00"}}},
		{"watch fires after ack", xenstore.TypeWatch, 0, "a\x00tk\x00", []msg{
			{xenstore.TypeWatch, 6, 0, "OK\x00"},
			{xenstore.TypeWatchEvent, 0, 0, "a\x00tk\x00"},
		}},
		{"write fires relative event", xenstore.TypeWrite, 0, "a/c\x00", []msg{
			{xenstore.TypeWatchEvent, 0, 0, "a/c\x00tk\x00"},
			{xenstore.TypeWrite, 7, 0, "OK\x00"},
		}},
		{"unknown transaction", xenstore.TypeRead, 77, "a\x00", []msg{{xenstore.TypeError, 8, 77, "ENOENT\x00"}}},
		{"domain path", xenstore.TypeGetDomainPath, 0, "3\x00", []msg{{xenstore.TypeGetDomainPath, 9, 0, "/local/domain/3\x00"}}},
		{"unsupported", xenstore.TypeIntroduce, 0, "1\x002\x003\x00", []msg{{xenstore.TypeError, 10, 0, "ENOSYS\x00"}}},
	}
	for i, st := range steps {
		r.send(st.typ, uint32(i+1), st.tx, st.in)
		var got []msg
		for range st.want {
			got = append(got, simple(r.recv()))
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", st.name, diff)
		}
	}
}

func TestOversizeRequestKillsConnection(t *testing.T) {
	srv := xenstoretest.NewServer()
	r := dialRaw(t, srv, 1)
	hdr := make([]byte, 16)
	hdr[0] = byte(xenstore.TypeRead)
	hdr[13] = 0x20 // len 8192
	r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	r.conn.Write(hdr)
	select {
	case err := <-r.done:
		if !errors.Is(err, xenstore.ErrProtocol) {
			t.Errorf("Serve = %v, want a protocol error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("connection survived an oversize request")
	}
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after kill: %v", err)
	}
}

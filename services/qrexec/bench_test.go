package qrexec

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
)

// benchAgent starts an agent with an echo service and a dom0 that has
// finished the handshake; the control stream's CONNECTION_TERMINATED
// messages arrive on the returned channel.
func benchAgent(b *testing.B) (*pipeDialer, net.Conn, chan struct{}) {
	dialer := newPipeDialer()
	a := NewAgent(dialer)
	a.Handle("qubes.Echo", func(ctx context.Context, req *Request, stdin io.Reader, stdout, stderr io.Writer) int {
		io.Copy(stdout, stdin)
		return 0
	})
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	x, y := net.Pipe()
	go a.Serve(ctx, x)
	io.ReadFull(y, make([]byte, 12))
	y.Write(cat(le32(0x300), le32(4), le32(4)))
	terminated := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 16)
		for {
			if _, err := io.ReadFull(y, buf); err != nil {
				return
			}
			terminated <- struct{}{}
		}
	}()
	return dialer, y, terminated
}

func benchCall(b *testing.B, dialer *pipeDialer, ctrl net.Conn, terminated chan struct{}, stdin []byte) {
	p := execPayload(0, 513, "user:QUBESRPC qubes.Echo dom0")
	ctrl.Write(cat(le32(0x200), le32(uint32(len(p))), p))
	dc := <-dialer.conns
	sent := make(chan struct{})
	go func() { dc.c.Write(cat(le32(0x300), le32(4), le32(4))); close(sent) }()
	var h [12]byte
	io.ReadFull(dc.c, h[:])
	<-sent
	var out bytes.Buffer
	code, err := runClientSide(&conn{rwc: dc.c}, 4, bytes.NewReader(stdin), &out, io.Discard)
	if err != nil || code != 0 || out.Len() != len(stdin) {
		b.Fatalf("exit %d, %v, %d bytes back", code, err, out.Len())
	}
	<-terminated
}

// BenchmarkExecRoundTrip measures one EXEC_CMDLINE call of a service with
// empty stdin, from request to CONNECTION_TERMINATED, over net.Pipe.
func BenchmarkExecRoundTrip(b *testing.B) {
	dialer, ctrl, terminated := benchAgent(b)
	b.ReportAllocs()
	for b.Loop() {
		benchCall(b, dialer, ctrl, terminated, nil)
	}
}

// BenchmarkEchoThroughput pushes 1 MiB through an echo service and back.
func BenchmarkEchoThroughput(b *testing.B) {
	dialer, ctrl, terminated := benchAgent(b)
	in := bytes.Repeat([]byte("x"), 1<<20)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		benchCall(b, dialer, ctrl, terminated, in)
	}
}

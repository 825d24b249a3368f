package nictest

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TCPEcho runs a TCP echo server on server at peer, port 7, sends msg to
// it from client and fails t unless the same bytes come back within
// timeout. It is the two-stack exchange the netstack and driver tests
// share.
func TCPEcho(t testing.TB, client, server *stack.Stack, peer netip.Addr, msg []byte, timeout time.Duration) {
	t.Helper()
	proto := header.IPv4ProtocolNumber
	if peer.Is6() {
		proto = header.IPv6ProtocolNumber
	}
	addr := tcpip.FullAddress{Addr: tcpip.AddrFromSlice(peer.AsSlice()), Port: 7}
	ln, err := gonet.ListenTCP(server, addr, proto)
	if err != nil {
		t.Fatalf("%v: %v", peer, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, client, addr, proto)
	if err != nil {
		t.Fatalf("%v: %v", peer, err)
	}
	defer c.Close()
	go c.Write(msg)
	got := make([]byte, len(msg))
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("%v: %v", peer, err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("%v: the TCP echo returned different bytes", peer)
	}
}

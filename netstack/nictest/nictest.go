// Package nictest provides an in-memory netdev.NIC pair, a virtual cable,
// for host tests of the network stack and the services above it.
package nictest

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/unikgo/unikgo/netdev"
)

// queueLen is how many frames a direction holds before Transmit waits,
// about a virtio ring's worth.
const queueLen = 256

// NIC is one end of a Pipe.
type NIC struct {
	mac  net.HardwareAddr
	mtu  int
	in   chan []byte
	peer *NIC

	once   sync.Once
	closed chan struct{}

	// Drops counts received frames too large for the reader's buffer.
	Drops atomic.Uint64
}

var _ netdev.BacklogNIC = (*NIC)(nil)

// Pipe returns two NICs joined back to back: a frame transmitted on one is
// received on the other. Each end's MAC is 02:00:00:00:00:<n> with n 1 and
// 2 respectively, so that stacks built on them are distinguishable.
func Pipe(mtu int) (*NIC, *NIC) {
	a := &NIC{mac: net.HardwareAddr{2, 0, 0, 0, 0, 1}, mtu: mtu, in: make(chan []byte, queueLen), closed: make(chan struct{})}
	b := &NIC{mac: net.HardwareAddr{2, 0, 0, 0, 0, 2}, mtu: mtu, in: make(chan []byte, queueLen), closed: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

// MAC implements netdev.NIC.
func (n *NIC) MAC() net.HardwareAddr { return n.mac }

// MTU implements netdev.NIC.
func (n *NIC) MTU() int { return n.mtu }

// Transmit implements netdev.NIC. It waits while the peer's queue is full;
// a frame sent to a closed peer is lost, as on an unplugged cable.
func (n *NIC) Transmit(ctx context.Context, frame []byte) error {
	select {
	case <-n.closed:
		return netdev.ErrDown
	default:
	}
	f := append([]byte(nil), frame...)
	select {
	case n.peer.in <- f:
		return nil
	case <-n.peer.closed:
		return nil
	case <-n.closed:
		return netdev.ErrDown
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Receive implements netdev.NIC.
func (n *NIC) Receive(ctx context.Context, buf []byte) (int, error) {
	for {
		select {
		case f := <-n.in:
			if len(f) > len(buf) {
				n.Drops.Add(1)
				continue
			}
			return copy(buf, f), nil
		case <-n.closed:
			return 0, netdev.ErrDown
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// RxBacklog implements netdev.BacklogNIC.
func (n *NIC) RxBacklog() int { return len(n.in) }

// Err is netdev.ErrDown once the NIC is closed, nil before.
func (n *NIC) Err() error {
	select {
	case <-n.closed:
		return netdev.ErrDown
	default:
		return nil
	}
}

// Close implements netdev.NIC.
func (n *NIC) Close() error {
	n.once.Do(func() { close(n.closed) })
	return nil
}

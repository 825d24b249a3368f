// Package netdev is the contract between network drivers (netfront,
// virtio-net) and the network stack: a NIC moves whole Ethernet frames.
// Drivers implement it; netstack consumes it; neither imports the other.
package netdev

import (
	"context"
	"errors"
	"net"
)

// NIC is one Ethernet interface.
type NIC interface {
	// MAC is the interface's hardware address (6 bytes).
	MAC() net.HardwareAddr
	// MTU is the largest IP packet the link carries, without the 14-byte
	// Ethernet header (1500 on most links).
	MTU() int
	// Transmit queues one frame, Ethernet header included, for sending.
	// The driver copies it or is done with it when Transmit returns. It may
	// wait for ring space while ctx lasts; it fails with ErrDown once the
	// device is gone.
	Transmit(ctx context.Context, frame []byte) error
	// Receive waits for the next frame and copies it into buf, returning
	// its length. A frame longer than buf is dropped and counted, never
	// truncated silently. It returns ctx's error when ctx ends and ErrDown
	// once the device is gone.
	Receive(ctx context.Context, buf []byte) (int, error)
	// Close stops the device and releases its memory and grants.
	Close() error
}

// ErrDown is returned by a NIC whose device went away or was closed.
var ErrDown = errors.New("netdev: the network device is down")

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

// GSOType says how a NIC is to cut a large frame into segments.
type GSOType uint8

// GSO types.
const (
	// GSONone: the frame is sent (or was received) as it is.
	GSONone GSOType = iota
	// GSOTCPv4 and GSOTCPv6: a TCP segment over IPv4 or IPv6 longer than
	// the MTU, to be cut into segments of Meta.GSOSize payload bytes
	// (Linux's TSO; on receive, segments the peer coalesced).
	GSOTCPv4
	GSOTCPv6
)

// Meta is what travels with a frame besides its bytes when offloads are
// on (see OffloadNIC). The zero Meta is an ordinary frame with complete
// checksums.
type Meta struct {
	// GSOType and GSOSize (the TCP payload bytes per segment, the MSS)
	// describe a frame larger than the MTU. GSOSize is non-zero exactly
	// when GSOType is not GSONone.
	GSOType GSOType
	GSOSize uint16
	// NeedsCsum: the frame's TCP or UDP checksum field holds only the
	// checksum of the pseudo-header, its length included (Linux's
	// CHECKSUM_PARTIAL); the NIC or whoever receives the frame completes
	// it. Every GSO frame has it.
	NeedsCsum bool
	// CsumValidated (receive only): the device or the peer checked the
	// frame's TCP or UDP checksum, or the frame never left the host.
	CsumValidated bool
}

// Offloads is what an OffloadNIC does. It does not change during the
// NIC's lifetime.
type Offloads struct {
	// TxCsum: TransmitMeta takes TCP frames with Meta.NeedsCsum.
	TxCsum bool
	// TxTCPv4 and TxTCPv6: TransmitMeta takes GSO frames of that type
	// (they also need TxCsum).
	TxTCPv4, TxTCPv6 bool
	// Rx: ReceiveMeta may return frames with NeedsCsum, CsumValidated or
	// a GSO type, up to MaxRxFrame bytes.
	Rx bool
	// MaxTxFrame is the largest frame, Ethernet header included, that
	// TransmitMeta takes with a GSO type; MaxRxFrame the largest that
	// ReceiveMeta returns. Both are at least the MTU's frame.
	MaxTxFrame, MaxRxFrame int
}

// OffloadNIC is a NIC that can move frames larger than its MTU and
// frames with partial checksums: checksum and segmentation offload. Its
// users find it by a type assertion; a NIC without it offloads nothing.
// With Offloads().Rx, Receive returns the same frames as ReceiveMeta
// without their Meta: a user that does not look at Meta must not use
// such a NIC (netfront turns Rx on only when configured to).
type OffloadNIC interface {
	NIC
	// Offloads says which Meta TransmitMeta takes and ReceiveMeta
	// returns.
	Offloads() Offloads
	// TransmitMeta is Transmit for a frame described by m. A frame with
	// an offload the NIC does not (or no longer) do is refused with an
	// error, never sent broken.
	TransmitMeta(ctx context.Context, frame []byte, m Meta) error
	// ReceiveMeta is Receive, returning the frame's Meta too. buf should
	// hold Offloads().MaxRxFrame bytes.
	ReceiveMeta(ctx context.Context, buf []byte) (int, Meta, error)
}

// BacklogNIC is a NIC that can tell how many received frames Receive (or
// ReceiveMeta) would return without waiting. The stack uses it to take
// frames in bursts: TCP segments of one connection that arrived together
// are coalesced (generic receive offload) and go up the stack as one, as
// Linux's NAPI and GRO do. A NIC without it has each frame handled alone.
type BacklogNIC interface {
	NIC
	// RxBacklog is the number of frames ready for Receive now; it may
	// count frames that Receive then drops.
	RxBacklog() int
}

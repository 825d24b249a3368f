package netfront

import (
	"encoding/binary"
	"fmt"
)

// The netif wire format, from Xen's public io/netif.h as compiled for
// x86_64 (little endian, natural alignment). Each struct is described
// once, by its offset constants; the types below marshal through them.

// Geometry.
const (
	// PageSize is the unit of a grant, and the most one slot carries.
	PageSize = 4096
	// SlotsMin is XEN_NETIF_NR_SLOTS_MIN: the most slots a packet may use
	// on either ring that every peer must accept. The driver never sends
	// more and drops received packets that use more.
	SlotsMin = 18
	// MaxTxSize is XEN_NETIF_MAX_TX_SIZE: the size field is 16 bits.
	MaxTxSize = 0xFFFF
	// EthHeader is an Ethernet header without a VLAN tag.
	EthHeader = 14
	// VLANTag is the 802.1Q tag a frame may carry on top of the MTU.
	VLANTag = 4
)

// struct xen_netif_tx_request (12 bytes): the tx ring's slot size.
const (
	TxRequestGrefOffset   = 0  // u32
	TxRequestOffsetOffset = 4  // u16: first byte in the page
	TxRequestFlagsOffset  = 6  // u16: NETTXF_*
	TxRequestIDOffset     = 8  // u16: echoed in the response
	TxRequestSizeOffset   = 10 // u16: the first slot's is the packet's
	TxRequestSize         = 12
)

// struct xen_netif_tx_response (4 bytes).
const (
	TxResponseIDOffset     = 0 // u16
	TxResponseStatusOffset = 2 // i16
	TxResponseSize         = 4
)

// struct xen_netif_rx_request (8 bytes): the rx ring's slot size.
const (
	RxRequestIDOffset   = 0 // u16
	RxRequestGrefOffset = 4 // u32
	RxRequestSize       = 8
)

// struct xen_netif_rx_response (8 bytes).
const (
	RxResponseIDOffset     = 0 // u16
	RxResponseOffsetOffset = 2 // u16
	RxResponseFlagsOffset  = 4 // u16: NETRXF_*
	RxResponseStatusOffset = 6 // i16: < 0 error, else bytes in this slot
	RxResponseSize         = 8
)

// struct xen_netif_extra_info (8 bytes), in a slot of either ring.
const (
	ExtraTypeOffset        = 0 // u8: ExtraGSO...
	ExtraFlagsOffset       = 1 // u8: ExtraFlagMore
	ExtraGSOSizeOffset     = 2 // u16
	ExtraGSOTypeOffset     = 4 // u8
	ExtraGSOFeaturesOffset = 6 // u16
	ExtraSize              = 8
)

// Transmit flags (NETTXF_*).
const (
	TxCsumBlank     = 1
	TxDataValidated = 2
	TxMoreData      = 4
	TxExtraInfo     = 8
)

// Receive flags (NETRXF_*).
const (
	RxDataValidated = 1
	RxCsumBlank     = 2
	RxMoreData      = 4
	RxExtraInfo     = 8
	RxGSOPrefix     = 16
)

// Extra info types (XEN_NETIF_EXTRA_TYPE_*) and flags.
const (
	ExtraGSO      = 1
	ExtraMcastAdd = 2
	ExtraMcastDel = 3
	ExtraHash     = 4
	ExtraXDP      = 5
	ExtraTypeMax  = 6 // types are 1 to ExtraTypeMax-1

	ExtraFlagMore = 1
)

// GSO types of an ExtraGSO slot (XEN_NETIF_GSO_TYPE_*).
const (
	GSOTypeNone  = 0
	GSOTypeTCPv4 = 1
	GSOTypeTCPv6 = 2
)

// Status is a response status (XEN_NETIF_RSP_*). In an rx response a
// non-negative status is the number of bytes in the slot.
type Status int16

// Statuses (io/netif.h).
const (
	StatusDropped Status = -2
	StatusError   Status = -1
	StatusOkay    Status = 0
	// StatusNull answers a slot that carried no data (an extra info
	// request); it says nothing about any packet.
	StatusNull Status = 1
)

func (s Status) String() string {
	switch s {
	case StatusDropped:
		return "dropped"
	case StatusError:
		return "error"
	case StatusOkay:
		return "okay"
	case StatusNull:
		return "null"
	}
	return fmt.Sprintf("status(%d)", int16(s))
}

var le = binary.LittleEndian

// TxRequest asks the backend to send Size bytes of the page granted as
// Gref, from Offset. The first request of a packet carries the whole
// packet's size; TxMoreData says another request follows.
type TxRequest struct {
	Gref   uint32
	Offset uint16
	Flags  uint16
	ID     uint16
	Size   uint16
}

// Put writes r into a tx slot.
func (r *TxRequest) Put(b []byte) {
	b = b[:TxRequestSize]
	le.PutUint32(b[TxRequestGrefOffset:], r.Gref)
	le.PutUint16(b[TxRequestOffsetOffset:], r.Offset)
	le.PutUint16(b[TxRequestFlagsOffset:], r.Flags)
	le.PutUint16(b[TxRequestIDOffset:], r.ID)
	le.PutUint16(b[TxRequestSizeOffset:], r.Size)
}

// ParseTxRequest reads a tx slot (what a backend does).
func ParseTxRequest(b []byte) TxRequest {
	b = b[:TxRequestSize]
	return TxRequest{
		Gref:   le.Uint32(b[TxRequestGrefOffset:]),
		Offset: le.Uint16(b[TxRequestOffsetOffset:]),
		Flags:  le.Uint16(b[TxRequestFlagsOffset:]),
		ID:     le.Uint16(b[TxRequestIDOffset:]),
		Size:   le.Uint16(b[TxRequestSizeOffset:]),
	}
}

// TxResponse answers one tx request.
type TxResponse struct {
	ID     uint16
	Status Status
}

// ParseTxResponse reads a tx response. Every bit pattern is one; whether
// it makes sense is the driver's check.
func ParseTxResponse(b []byte) TxResponse {
	b = b[:TxResponseSize]
	return TxResponse{ID: le.Uint16(b[TxResponseIDOffset:]), Status: Status(int16(le.Uint16(b[TxResponseStatusOffset:])))}
}

// Put writes r into a tx slot (what a backend does).
func (r *TxResponse) Put(b []byte) {
	b = b[:TxResponseSize]
	le.PutUint16(b[TxResponseIDOffset:], r.ID)
	le.PutUint16(b[TxResponseStatusOffset:], uint16(r.Status))
}

// RxRequest gives the backend the page granted as Gref to copy a received
// packet (or part of one) into.
type RxRequest struct {
	ID   uint16
	Gref uint32
}

// Put writes r into an rx slot, padding included.
func (r *RxRequest) Put(b []byte) {
	b = b[:RxRequestSize]
	le.PutUint16(b[RxRequestIDOffset:], r.ID)
	b[2], b[3] = 0, 0
	le.PutUint32(b[RxRequestGrefOffset:], r.Gref)
}

// ParseRxRequest reads an rx slot (what a backend does).
func ParseRxRequest(b []byte) RxRequest {
	b = b[:RxRequestSize]
	return RxRequest{ID: le.Uint16(b[RxRequestIDOffset:]), Gref: le.Uint32(b[RxRequestGrefOffset:])}
}

// RxResponse says what the backend put in the page of the request it
// answers: Status bytes from Offset, or an error if Status is negative.
type RxResponse struct {
	ID     uint16
	Offset uint16
	Flags  uint16
	Status Status
}

// ParseRxResponse reads an rx response.
func ParseRxResponse(b []byte) RxResponse {
	b = b[:RxResponseSize]
	return RxResponse{
		ID:     le.Uint16(b[RxResponseIDOffset:]),
		Offset: le.Uint16(b[RxResponseOffsetOffset:]),
		Flags:  le.Uint16(b[RxResponseFlagsOffset:]),
		Status: Status(int16(le.Uint16(b[RxResponseStatusOffset:]))),
	}
}

// Put writes r into an rx slot (what a backend does).
func (r *RxResponse) Put(b []byte) {
	b = b[:RxResponseSize]
	le.PutUint16(b[RxResponseIDOffset:], r.ID)
	le.PutUint16(b[RxResponseOffsetOffset:], r.Offset)
	le.PutUint16(b[RxResponseFlagsOffset:], r.Flags)
	le.PutUint16(b[RxResponseStatusOffset:], uint16(r.Status))
}

// Extra is a struct xen_netif_extra_info; GSO fields only.
type Extra struct {
	Type        uint8
	Flags       uint8
	GSOSize     uint16
	GSOType     uint8
	GSOFeatures uint16
}

// ParseExtra reads an extra info slot.
func ParseExtra(b []byte) Extra {
	b = b[:ExtraSize]
	return Extra{
		Type:        b[ExtraTypeOffset],
		Flags:       b[ExtraFlagsOffset],
		GSOSize:     le.Uint16(b[ExtraGSOSizeOffset:]),
		GSOType:     b[ExtraGSOTypeOffset],
		GSOFeatures: le.Uint16(b[ExtraGSOFeaturesOffset:]),
	}
}

// Put writes e into a slot (zeroing the padding).
func (e *Extra) Put(b []byte) {
	b = b[:ExtraSize]
	clear(b)
	b[ExtraTypeOffset] = e.Type
	b[ExtraFlagsOffset] = e.Flags
	le.PutUint16(b[ExtraGSOSizeOffset:], e.GSOSize)
	b[ExtraGSOTypeOffset] = e.GSOType
	le.PutUint16(b[ExtraGSOFeaturesOffset:], e.GSOFeatures)
}

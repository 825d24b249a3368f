package blkfront

import (
	"encoding/binary"
	"fmt"
)

// The blkif wire format, from Xen's public io/blkif.h as compiled for
// x86_64 (little endian, natural alignment). Each struct is described once,
// by its offset constants; the types below marshal through them only.

// Operation is a blkif request's operation code (BLKIF_OP_*).
type Operation uint8

// Operation codes (io/blkif.h).
const (
	OpRead           Operation = 0
	OpWrite          Operation = 1
	OpWriteBarrier   Operation = 2
	OpFlushDiskCache Operation = 3
	OpDiscard        Operation = 5
	OpIndirect       Operation = 6
)

var opNames = map[Operation]string{
	OpRead: "read", OpWrite: "write", OpWriteBarrier: "write-barrier",
	OpFlushDiskCache: "flush-diskcache", OpDiscard: "discard", OpIndirect: "indirect",
}

func (o Operation) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Status is a blkif response's status (BLKIF_RSP_*).
type Status int16

// Status codes (io/blkif.h).
const (
	StatusOkay       Status = 0
	StatusError      Status = -1
	StatusEOPNOTSUPP Status = -2
)

// Geometry of requests (io/blkif.h).
const (
	// SectorShift: first_sect, last_sect, sector_number and the backend's
	// "sectors" are in 512-byte units whatever the disk's sector-size, as
	// Linux blkfront and blkback use them (we never write
	// feature-large-sector-size).
	SectorShift = 9
	SectorUnit  = 1 << SectorShift
	// PageSize is the unit of a segment and of a grant.
	PageSize = 4096
	// SectorsPerPage is how many 512-byte units one segment can cover:
	// last_sect is at most 7.
	SectorsPerPage = PageSize / SectorUnit

	// MaxSegments is BLKIF_MAX_SEGMENTS_PER_REQUEST.
	MaxSegments = 11
	// MaxIndirectPages is BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST.
	MaxIndirectPages = 8
	// SegmentsPerIndirectPage is how many segment structs fill one
	// indirect page.
	SegmentsPerIndirectPage = PageSize / SegmentSize
	// MaxIndirectSegments is the most segments one indirect request can
	// name.
	MaxIndirectSegments = MaxIndirectPages * SegmentsPerIndirectPage
)

// struct blkif_request_segment (8 bytes).
const (
	SegmentGrefOffset      = 0 // u32
	SegmentFirstSectOffset = 4 // u8, inclusive
	SegmentLastSectOffset  = 5 // u8, inclusive
	SegmentSize            = 8
)

// struct blkif_request (112 bytes), the ring's request slot size.
const (
	RequestOperationOffset  = 0  // u8
	RequestNrSegmentsOffset = 1  // u8
	RequestHandleOffset     = 2  // u16
	RequestIDOffset         = 8  // u64
	RequestSectorOffset     = 16 // u64
	RequestSegOffset        = 24 // seg[11]
	RequestSize             = 112
)

// struct blkif_request_indirect (64 bytes, inside a 112-byte slot).
const (
	IndirectOperationOffset  = 0  // u8: OpIndirect
	IndirectOpOffset         = 1  // u8: OpRead or OpWrite
	IndirectNrSegmentsOffset = 2  // u16
	IndirectIDOffset         = 8  // u64
	IndirectSectorOffset     = 16 // u64
	IndirectHandleOffset     = 24 // u16
	IndirectGrefsOffset      = 28 // u32[8]
	IndirectSize             = 64
)

// struct blkif_request_discard (32 bytes, inside a 112-byte slot).
const (
	DiscardOperationOffset = 0  // u8: OpDiscard
	DiscardFlagOffset      = 1  // u8: BLKIF_DISCARD_SECURE
	DiscardHandleOffset    = 2  // u16
	DiscardIDOffset        = 8  // u64
	DiscardSectorOffset    = 16 // u64
	DiscardNrSectorsOffset = 24 // u64
	DiscardSize            = 32
)

// struct blkif_response (16 bytes).
const (
	ResponseIDOffset        = 0  // u64
	ResponseOperationOffset = 8  // u8
	ResponseStatusOffset    = 10 // i16
	ResponseSize            = 16
)

// Segment is one page of a request's data: sectors first..last (inclusive,
// 512-byte units) of the page granted as Gref.
type Segment struct {
	Gref      uint32
	FirstSect uint8
	LastSect  uint8
}

func (s Segment) put(b []byte) {
	binary.LittleEndian.PutUint32(b[SegmentGrefOffset:], s.Gref)
	b[SegmentFirstSectOffset] = s.FirstSect
	b[SegmentLastSectOffset] = s.LastSect
	b[6], b[7] = 0, 0
}

func parseSegment(b []byte) Segment {
	return Segment{
		Gref:      binary.LittleEndian.Uint32(b[SegmentGrefOffset:]),
		FirstSect: b[SegmentFirstSectOffset],
		LastSect:  b[SegmentLastSectOffset],
	}
}

// Request is a direct request (read, write, barrier, flush): up to
// MaxSegments segments inline.
type Request struct {
	Operation Operation
	Handle    uint16
	ID        uint64
	Sector    uint64
	Segments  []Segment
}

// Put writes r into a request slot. It zeroes the slot first, so no stale
// bytes from an earlier request reach the backend.
func (r *Request) Put(b []byte) {
	b = b[:RequestSize]
	clear(b)
	b[RequestOperationOffset] = byte(r.Operation)
	b[RequestNrSegmentsOffset] = byte(len(r.Segments))
	binary.LittleEndian.PutUint16(b[RequestHandleOffset:], r.Handle)
	binary.LittleEndian.PutUint64(b[RequestIDOffset:], r.ID)
	binary.LittleEndian.PutUint64(b[RequestSectorOffset:], r.Sector)
	for i, s := range r.Segments {
		s.put(b[RequestSegOffset+i*SegmentSize:])
	}
}

// IndirectRequest is a read or write whose segments live in separately
// granted indirect pages (BLKIF_OP_INDIRECT).
type IndirectRequest struct {
	Op          Operation // OpRead or OpWrite
	NrSegments  uint16
	ID          uint64
	Sector      uint64
	Handle      uint16
	IndirectRef []uint32 // at most MaxIndirectPages
}

// Put writes r into a request slot, zeroing it first.
func (r *IndirectRequest) Put(b []byte) {
	b = b[:RequestSize]
	clear(b)
	b[IndirectOperationOffset] = byte(OpIndirect)
	b[IndirectOpOffset] = byte(r.Op)
	binary.LittleEndian.PutUint16(b[IndirectNrSegmentsOffset:], r.NrSegments)
	binary.LittleEndian.PutUint64(b[IndirectIDOffset:], r.ID)
	binary.LittleEndian.PutUint64(b[IndirectSectorOffset:], r.Sector)
	binary.LittleEndian.PutUint16(b[IndirectHandleOffset:], r.Handle)
	for i, g := range r.IndirectRef {
		binary.LittleEndian.PutUint32(b[IndirectGrefsOffset+4*i:], g)
	}
}

// DiscardRequest asks the backend to discard NrSectors 512-byte units.
type DiscardRequest struct {
	Secure    bool
	Handle    uint16
	ID        uint64
	Sector    uint64
	NrSectors uint64
}

// Put writes r into a request slot, zeroing it first.
func (r *DiscardRequest) Put(b []byte) {
	b = b[:RequestSize]
	clear(b)
	b[DiscardOperationOffset] = byte(OpDiscard)
	if r.Secure {
		b[DiscardFlagOffset] = 1
	}
	binary.LittleEndian.PutUint16(b[DiscardHandleOffset:], r.Handle)
	binary.LittleEndian.PutUint64(b[DiscardIDOffset:], r.ID)
	binary.LittleEndian.PutUint64(b[DiscardSectorOffset:], r.Sector)
	binary.LittleEndian.PutUint64(b[DiscardNrSectorsOffset:], r.NrSectors)
}

// Response is a backend's answer to one request.
type Response struct {
	ID        uint64
	Operation Operation
	Status    Status
}

// ParseResponse reads a response slot. Every bit pattern is a Response;
// whether it makes sense is the driver's check (see validate).
func ParseResponse(b []byte) Response {
	b = b[:ResponseSize]
	return Response{
		ID:        binary.LittleEndian.Uint64(b[ResponseIDOffset:]),
		Operation: Operation(b[ResponseOperationOffset]),
		Status:    Status(int16(binary.LittleEndian.Uint16(b[ResponseStatusOffset:]))),
	}
}

// Put writes r into a response slot (what a backend does; for tests and
// simulated backends).
func (r *Response) Put(b []byte) {
	b = b[:ResponseSize]
	clear(b)
	binary.LittleEndian.PutUint64(b[ResponseIDOffset:], r.ID)
	b[ResponseOperationOffset] = byte(r.Operation)
	binary.LittleEndian.PutUint16(b[ResponseStatusOffset:], uint16(r.Status))
}

package blkfront

import "encoding/binary"

// The backend's side of the wire, for the simulated backend and the wire
// tests: a backend parses what the driver's Put methods write.

func parseRequestForTest(b []byte) Request {
	r := Request{
		Operation: Operation(b[RequestOperationOffset]),
		Handle:    binary.LittleEndian.Uint16(b[RequestHandleOffset:]),
		ID:        binary.LittleEndian.Uint64(b[RequestIDOffset:]),
		Sector:    binary.LittleEndian.Uint64(b[RequestSectorOffset:]),
	}
	n := int(b[RequestNrSegmentsOffset])
	if n > MaxSegments {
		n = MaxSegments
	}
	if n > 0 {
		r.Segments = make([]Segment, n)
		for i := range r.Segments {
			r.Segments[i] = parseSegment(b[RequestSegOffset+i*SegmentSize:])
		}
	}
	return r
}

func parseIndirectForTest(b []byte) IndirectRequest {
	r := IndirectRequest{
		Op:         Operation(b[IndirectOpOffset]),
		NrSegments: binary.LittleEndian.Uint16(b[IndirectNrSegmentsOffset:]),
		ID:         binary.LittleEndian.Uint64(b[IndirectIDOffset:]),
		Sector:     binary.LittleEndian.Uint64(b[IndirectSectorOffset:]),
		Handle:     binary.LittleEndian.Uint16(b[IndirectHandleOffset:]),
	}
	n := min(indirectPages(int(r.NrSegments)), MaxIndirectPages)
	for i := 0; i < n; i++ {
		r.IndirectRef = append(r.IndirectRef, binary.LittleEndian.Uint32(b[IndirectGrefsOffset+4*i:]))
	}
	return r
}

func parseDiscardForTest(b []byte) DiscardRequest {
	return DiscardRequest{
		Secure:    b[DiscardFlagOffset]&1 != 0,
		Handle:    binary.LittleEndian.Uint16(b[DiscardHandleOffset:]),
		ID:        binary.LittleEndian.Uint64(b[DiscardIDOffset:]),
		Sector:    binary.LittleEndian.Uint64(b[DiscardSectorOffset:]),
		NrSectors: binary.LittleEndian.Uint64(b[DiscardNrSectorsOffset:]),
	}
}

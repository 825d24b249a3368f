package blkfront

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The numbers in these tests are those of shared/docs/xen-abi.md ("blkif")
// and of Xen's io/blkif.h compiled for x86_64, where the indirect and
// discard layouts come from (natural alignment: the u64 id moves to 8).

func TestLayoutConstants(t *testing.T) {
	got := map[string]int{
		"segment.gref": SegmentGrefOffset, "segment.first_sect": SegmentFirstSectOffset,
		"segment.last_sect": SegmentLastSectOffset, "segment.size": SegmentSize,

		"request.operation": RequestOperationOffset, "request.nr_segments": RequestNrSegmentsOffset,
		"request.handle": RequestHandleOffset, "request.id": RequestIDOffset,
		"request.sector_number": RequestSectorOffset, "request.seg": RequestSegOffset,
		"request.size": RequestSize,

		"indirect.operation": IndirectOperationOffset, "indirect.indirect_op": IndirectOpOffset,
		"indirect.nr_segments": IndirectNrSegmentsOffset, "indirect.id": IndirectIDOffset,
		"indirect.sector_number": IndirectSectorOffset, "indirect.handle": IndirectHandleOffset,
		"indirect.indirect_grefs": IndirectGrefsOffset, "indirect.size": IndirectSize,

		"discard.operation": DiscardOperationOffset, "discard.flag": DiscardFlagOffset,
		"discard.handle": DiscardHandleOffset, "discard.id": DiscardIDOffset,
		"discard.sector_number": DiscardSectorOffset, "discard.nr_sectors": DiscardNrSectorsOffset,
		"discard.size": DiscardSize,

		"response.id": ResponseIDOffset, "response.operation": ResponseOperationOffset,
		"response.status": ResponseStatusOffset, "response.size": ResponseSize,

		"BLKIF_MAX_SEGMENTS_PER_REQUEST":       MaxSegments,
		"BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST": MaxIndirectPages,
		"segments per indirect page":           SegmentsPerIndirectPage,
	}
	want := map[string]int{
		"segment.gref": 0, "segment.first_sect": 4, "segment.last_sect": 5, "segment.size": 8,

		"request.operation": 0, "request.nr_segments": 1, "request.handle": 2, "request.id": 8,
		"request.sector_number": 16, "request.seg": 24, "request.size": 112,

		"indirect.operation": 0, "indirect.indirect_op": 1, "indirect.nr_segments": 2,
		"indirect.id": 8, "indirect.sector_number": 16, "indirect.handle": 24,
		"indirect.indirect_grefs": 28, "indirect.size": 64,

		"discard.operation": 0, "discard.flag": 1, "discard.handle": 2, "discard.id": 8,
		"discard.sector_number": 16, "discard.nr_sectors": 24, "discard.size": 32,

		"response.id": 0, "response.operation": 8, "response.status": 10, "response.size": 16,

		"BLKIF_MAX_SEGMENTS_PER_REQUEST": 11, "BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST": 8,
		"segments per indirect page": 512,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("blkif layout (-io/blkif.h +Go):\n%s", diff)
	}
	// The structs must fit the 112-byte request slot, and seg[11] must end
	// exactly at its end.
	if RequestSegOffset+MaxSegments*SegmentSize != RequestSize {
		t.Errorf("seg[11] ends at %d, want %d", RequestSegOffset+MaxSegments*SegmentSize, RequestSize)
	}
	if IndirectGrefsOffset+4*MaxIndirectPages > IndirectSize || IndirectSize > RequestSize || DiscardSize > RequestSize {
		t.Error("indirect or discard request does not fit its slot")
	}
}

func TestOperationNumbers(t *testing.T) {
	got := map[string]int{
		"READ": int(OpRead), "WRITE": int(OpWrite), "WRITE_BARRIER": int(OpWriteBarrier),
		"FLUSH_DISKCACHE": int(OpFlushDiskCache), "DISCARD": int(OpDiscard), "INDIRECT": int(OpIndirect),
		"RSP_OKAY": int(StatusOkay), "RSP_ERROR": int(StatusError), "RSP_EOPNOTSUPP": int(StatusEOPNOTSUPP),
		"VDISK_CDROM": InfoCDROM, "VDISK_REMOVABLE": InfoRemovable, "VDISK_READONLY": InfoReadOnly,
	}
	want := map[string]int{
		"READ": 0, "WRITE": 1, "WRITE_BARRIER": 2, "FLUSH_DISKCACHE": 3, "DISCARD": 5, "INDIRECT": 6,
		"RSP_OKAY": 0, "RSP_ERROR": -1, "RSP_EOPNOTSUPP": -2,
		"VDISK_CDROM": 1, "VDISK_REMOVABLE": 2, "VDISK_READONLY": 4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("codes (-io/blkif.h +Go):\n%s", diff)
	}
}

// TestRequestBytes checks every field lands at its documented offset, and
// that Put clears what an earlier, longer request left in the slot.
func TestRequestBytes(t *testing.T) {
	slot := make([]byte, RequestSize)
	for i := range slot {
		slot[i] = 0xEE
	}
	r := Request{
		Operation: OpWrite, Handle: 0xCAFE, ID: 0x1122334455667788, Sector: 0x0102030405060708,
		Segments: []Segment{{Gref: 0xA1A2A3A4, FirstSect: 1, LastSect: 7}, {Gref: 9, FirstSect: 0, LastSect: 3}},
	}
	r.Put(slot)
	want := make([]byte, RequestSize)
	want[0] = 1
	want[1] = 2
	binary.LittleEndian.PutUint16(want[2:], 0xCAFE)
	binary.LittleEndian.PutUint64(want[8:], 0x1122334455667788)
	binary.LittleEndian.PutUint64(want[16:], 0x0102030405060708)
	binary.LittleEndian.PutUint32(want[24:], 0xA1A2A3A4)
	want[28], want[29] = 1, 7
	binary.LittleEndian.PutUint32(want[32:], 9)
	want[36], want[37] = 0, 3
	if diff := cmp.Diff(want, slot); diff != "" {
		t.Errorf("request bytes (-want +got):\n%s", diff)
	}
	if got := parseRequestForTest(slot); !cmp.Equal(got, r) {
		t.Errorf("round trip: %s", cmp.Diff(r, got))
	}
}

func TestIndirectBytes(t *testing.T) {
	slot := make([]byte, RequestSize)
	for i := range slot {
		slot[i] = 0xEE
	}
	r := IndirectRequest{Op: OpRead, NrSegments: 600, ID: 42, Sector: 1 << 40, Handle: 51712, IndirectRef: []uint32{100, 101}}
	r.Put(slot)
	want := make([]byte, RequestSize)
	want[0], want[1] = 6, 0
	binary.LittleEndian.PutUint16(want[2:], 600)
	binary.LittleEndian.PutUint64(want[8:], 42)
	binary.LittleEndian.PutUint64(want[16:], 1<<40)
	binary.LittleEndian.PutUint16(want[24:], 51712)
	binary.LittleEndian.PutUint32(want[28:], 100)
	binary.LittleEndian.PutUint32(want[32:], 101)
	if diff := cmp.Diff(want, slot); diff != "" {
		t.Errorf("indirect request bytes (-want +got):\n%s", diff)
	}
}

func TestDiscardBytes(t *testing.T) {
	slot := make([]byte, RequestSize)
	r := DiscardRequest{Secure: true, Handle: 3, ID: 7, Sector: 800, NrSectors: 16}
	r.Put(slot)
	want := make([]byte, RequestSize)
	want[0], want[1] = 5, 1
	binary.LittleEndian.PutUint16(want[2:], 3)
	binary.LittleEndian.PutUint64(want[8:], 7)
	binary.LittleEndian.PutUint64(want[16:], 800)
	binary.LittleEndian.PutUint64(want[24:], 16)
	if diff := cmp.Diff(want, slot); diff != "" {
		t.Errorf("discard bytes (-want +got):\n%s", diff)
	}
}

func TestResponseBytes(t *testing.T) {
	b := make([]byte, ResponseSize)
	binary.LittleEndian.PutUint64(b[0:], 0xDEADBEEF01)
	b[8] = 3
	b[9] = 0xFF // padding: ignored
	binary.LittleEndian.PutUint16(b[10:], 0xFFFE)
	got := ParseResponse(b)
	want := Response{ID: 0xDEADBEEF01, Operation: OpFlushDiskCache, Status: StatusEOPNOTSUPP}
	if got != want {
		t.Errorf("ParseResponse = %+v, want %+v", got, want)
	}
	out := make([]byte, ResponseSize)
	want.Put(out)
	b[9] = 0
	if diff := cmp.Diff(b, out); diff != "" {
		t.Errorf("Response.Put (-want +got):\n%s", diff)
	}
}

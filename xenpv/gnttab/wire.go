package gnttab

// Wire formats of xen/include/public/grant_table.h and memory.h (x86-64),
// as recorded in shared/docs/xen-abi.md; wire_test.go checks the offsets.

// Grant entry v1 (8 bytes): flags u16@0, domid u16@2, frame u32@4.
const (
	entrySize      = 8
	entriesPerPage = pageSize / entrySize
	pageSize       = 4096

	gtfPermitAccess = 1
	gtfReadOnly     = 4
	gtfReading      = 8
	gtfWriting      = 16

	// reservedRefs are refs 0-7, which the toolstack uses (console 0,
	// xenstore 1) and guests never hand out.
	reservedRefs = 8
)

// GNTMAP flags.
const (
	gntmapHostMap  = 2
	gntmapReadOnly = 4
)

// GNTCOPY flags: which side names a grant ref rather than a local frame.
const (
	gntcopySourceGref = 1
	gntcopyDestGref   = 2
)

// querySize is struct gnttab_query_size.
type querySize struct {
	dom       uint16
	_         uint16
	nrFrames  uint32
	maxFrames uint32
	status    int16
	_         uint16
}

// mapGrantRef is struct gnttab_map_grant_ref.
type mapGrantRef struct {
	hostAddr   uint64
	flags      uint32
	ref        uint32
	dom        uint16
	status     int16
	handle     uint32
	devBusAddr uint64
}

// unmapGrantRef is struct gnttab_unmap_grant_ref.
type unmapGrantRef struct {
	hostAddr   uint64
	devBusAddr uint64
	handle     uint32
	status     int16
	_          uint16
}

// copyPtr is struct gnttab_copy_ptr: a grant ref or a local frame.
type copyPtr struct {
	refOrFrame uint64
	domid      uint16
	offset     uint16
	_          uint32
}

// copyOp is struct gnttab_copy.
type copyOp struct {
	source, dest copyPtr
	len          uint16
	flags        uint16
	status       int16
	_            uint16
}

// memoryReservation is struct xen_memory_reservation.
type memoryReservation struct {
	extentStart uint64 // guest handle: address of a []uint64 of frames
	nrExtents   uint64
	extentOrder uint32
	memFlags    uint32
	domid       uint16
	_           [3]uint16
}

// Status is a GNTST_* per-operation result.
type Status int16

// GNTST values.
const (
	statusOkay          Status = 0
	statusGeneralError  Status = -1
	statusBadDomain     Status = -2
	statusBadGntref     Status = -3
	statusBadHandle     Status = -4
	statusBadVirtAddr   Status = -5
	statusBadDevAddr    Status = -6
	statusNoDeviceSpace Status = -7
	statusPermission    Status = -8
	statusBadPage       Status = -9
	statusBadCopyArg    Status = -10
	statusAddressTooBig Status = -11
	statusEAgain        Status = -12
	statusNoSpace       Status = -13
)

var statusText = [...]string{
	"okay", "general error", "unknown or dying domain", "invalid grant reference",
	"invalid mapping handle", "invalid virtual address", "invalid device address",
	"no spare translation slot", "permission denied (the grant is not for us, or is read-only)",
	"bad page", "copy arguments cross a page boundary", "page address does not fit",
	"operation not done; try again", "out of space",
}

// Error returns the status's meaning; callers wrap it with what failed.
func (s Status) Error() string {
	if s <= 0 && int(-s) < len(statusText) {
		return statusText[-s]
	}
	return "unknown grant status " + itoa(int(s))
}

func itoa(v int) string {
	neg := v < 0
	if neg {
		v = -v
	}
	var b [12]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		if v /= 10; v == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

package gnttab

import (
	"testing"
	"unsafe"
)

// The values are shared/docs/xen-abi.md's (Grant tables v1) and
// grant_table.h's for x86-64.
func TestWireLayout(t *testing.T) {
	var q querySize
	var m mapGrantRef
	var u unmapGrantRef
	var c copyOp
	var r memoryReservation
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"query_size", unsafe.Sizeof(q), 16},
		{"query_size.nr_frames", unsafe.Offsetof(q.nrFrames), 4},
		{"query_size.max_nr_frames", unsafe.Offsetof(q.maxFrames), 8},
		{"query_size.status", unsafe.Offsetof(q.status), 12},
		{"map_grant_ref", unsafe.Sizeof(m), 32},
		{"map.flags", unsafe.Offsetof(m.flags), 8},
		{"map.ref", unsafe.Offsetof(m.ref), 12},
		{"map.dom", unsafe.Offsetof(m.dom), 16},
		{"map.status", unsafe.Offsetof(m.status), 18},
		{"map.handle", unsafe.Offsetof(m.handle), 20},
		{"map.dev_bus_addr", unsafe.Offsetof(m.devBusAddr), 24},
		{"unmap_grant_ref", unsafe.Sizeof(u), 24},
		{"unmap.dev_bus_addr", unsafe.Offsetof(u.devBusAddr), 8},
		{"unmap.handle", unsafe.Offsetof(u.handle), 16},
		{"unmap.status", unsafe.Offsetof(u.status), 20},
		{"copy", unsafe.Sizeof(c), 40},
		{"copy.source.domid", unsafe.Offsetof(c.source) + unsafe.Offsetof(c.source.domid), 8},
		{"copy.source.offset", unsafe.Offsetof(c.source) + unsafe.Offsetof(c.source.offset), 10},
		{"copy.dest", unsafe.Offsetof(c.dest), 16},
		{"copy.len", unsafe.Offsetof(c.len), 32},
		{"copy.flags", unsafe.Offsetof(c.flags), 34},
		{"copy.status", unsafe.Offsetof(c.status), 36},
		{"memory_reservation", unsafe.Sizeof(r), 32},
		{"reservation.nr_extents", unsafe.Offsetof(r.nrExtents), 8},
		{"reservation.extent_order", unsafe.Offsetof(r.extentOrder), 16},
		{"reservation.mem_flags", unsafe.Offsetof(r.memFlags), 20},
		{"reservation.domid", unsafe.Offsetof(r.domid), 24},
		{"entries per frame", entriesPerPage, 512},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestStatusError(t *testing.T) {
	for s, want := range map[Status]string{
		statusBadGntref: "invalid grant reference",
		statusNoSpace:   "out of space",
		-14:             "unknown grant status -14",
		3:               "unknown grant status 3",
	} {
		if got := s.Error(); got != want {
			t.Errorf("Status(%d).Error() = %q, want %q", s, got, want)
		}
	}
}

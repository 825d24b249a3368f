package kernel

import "testing"

// TestStraddledPage: with CR2 lost, a not-present fault whose decoded
// address lies in a present page is an access crossing into the next page,
// and that page is the one to map; anything else keeps the decoded address.
func TestStraddledPage(t *testing.T) {
	const page = 0x7f0000001000
	for _, tc := range []struct {
		start   uintptr
		present bool
		want    uintptr
	}{
		{page + 0xff8, true, page + 0x1007}, // MOVDQU X3, 0x30(DI) at 8 bytes before the end
		{page + 0xff1, true, page + 0x1000},
		{page + 0xff0, true, page + 0xff0}, // ends on the last byte: same page
		{page + 0xff8, false, page + 0xff8},
		{page, true, page},
		{0, false, 0},
		{^uintptr(0) - 3, true, ^uintptr(0) - 3}, // wraps: left alone
	} {
		if got := straddledPage(tc.start, tc.present); got != tc.want {
			t.Errorf("straddledPage(%#x, %v) = %#x, want %#x", tc.start, tc.present, got, tc.want)
		}
	}
}

// TestRecoverAddress: the choice of the page to map for a not-present fault
// that arrived without its address. Present pages are never chosen.
func TestRecoverAddress(t *testing.T) {
	const (
		stack = uintptr(0x7f0000010000) // RSP 0x...10000: the push goes to page 0x...f000
		heap  = uintptr(0x7f0000100000)
	)
	mapped := map[uintptr]bool{stack: true, heap: true}
	present := func(a uintptr) bool { return mapped[a&^(pageSize-1)] }
	for _, tc := range []struct {
		name    string
		decoded uintptr
		ok      bool
		rsp     uintptr
		want    uintptr
		wantOK  bool
	}{
		{"nil dereference", 0x18, true, stack + 0x100, 0x18, true},
		{"decoded, not present", heap + 0x2000, true, stack + 0x100, heap + 0x2000, true},
		{"decoded, straddling into the next page", heap + 0xff8, true, stack + 0x100, heap + 0x1007, true},
		{"decoded but present: would loop", heap + 0x10, true, stack + 0x100, heap + 0x10, false},
		{"unknown instruction, fresh stack page", 0, false, stack, stack - 8, true},
		{"unknown instruction, stack present", 0, false, stack + 0x100, stack + 0xf8, false},
	} {
		got, ok := recoverAddress(tc.decoded, tc.ok, tc.rsp, present)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: recoverAddress(%#x, %v, %#x) = %#x, %v; want %#x, %v",
				tc.name, tc.decoded, tc.ok, tc.rsp, got, ok, tc.want, tc.wantOK)
		}
	}
}

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

package disks

import "testing"

func TestXenName(t *testing.T) {
	for _, tc := range []struct {
		id   string
		name string
		rdev uint64
		bad  bool
	}{
		{id: "51712", name: "xvda", rdev: 202 << 8},
		{id: "51728", name: "xvdb", rdev: 202<<8 | 16},
		{id: "51952", name: "xvdp", rdev: 202<<8 | 240},
		{id: "268439552", name: "xvdq"},  // 1<<28 | 16<<8
		{id: "268442112", name: "xvdaa"}, // 1<<28 | 26<<8
		{id: "51713", bad: true},         // xvda1
		{id: "768", bad: true},           // hda
		{id: "xvda", bad: true},          // not a number
		{id: "99999999999", bad: true},   // out of range
		{id: "268439553", bad: true},     // extended, partition 1
	} {
		name, rdev, err := XenName(tc.id)
		if tc.bad {
			if err == nil {
				t.Errorf("XenName(%q) = %q, want an error", tc.id, name)
			}
			continue
		}
		if err != nil || name != tc.name || rdev != tc.rdev {
			t.Errorf("XenName(%q) = %q, %#x, %v; want %q, %#x", tc.id, name, rdev, err, tc.name, tc.rdev)
		}
	}
}

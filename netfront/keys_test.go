package netfront

import (
	"strings"
	"testing"
)

func TestParseMAC(t *testing.T) {
	good := map[string]string{
		"00:16:3e:5a:01:02": "00:16:3e:5a:01:02",
		"00:16:3E:5A:0F:FF": "00:16:3e:5a:0f:ff",
		"02:00:00:00:00:01": "02:00:00:00:00:01",
		"fe:ff:ff:ff:ff:fe": "fe:ff:ff:ff:ff:fe",
	}
	for in, want := range good {
		mac, err := ParseMAC(in)
		if err != nil || mac.String() != want {
			t.Errorf("ParseMAC(%q) = %v, %v", in, mac, err)
		}
	}
	bad := []string{
		"", "00:16:3e:5a:01", "00:16:3e:5a:01:02:03", "00-16-3e-5a-01-02", "0016.3e5a.0102",
		"00:16:3e:5a:01:0g", " 0:16:3e:5a:01:02", "00:16:3e:5a:01:02 ", "00:16:3e:5a:01:2",
		"01:16:3e:5a:01:02", // multicast
		"ff:ff:ff:ff:ff:ff", // broadcast
		"00:00:00:00:00:00",
		"00:16:3e:5a:01:02\x00", "+0:16:3e:5a:01:02", "0x:16:3e:5a:01:02",
		strings.Repeat("0", 1000),
	}
	for _, in := range bad {
		if mac, err := ParseMAC(in); err == nil {
			t.Errorf("ParseMAC(%q) = %v, want an error", in, mac)
		}
	}
}

func TestParseParams(t *testing.T) {
	base := func() (map[string]string, map[string]string) {
		return map[string]string{"mac": "00:16:3e:00:00:01"},
			map[string]string{"feature-rx-copy": "1", "feature-sg": "1", "mac": "00:16:3e:00:00:02"}
	}
	tests := []struct {
		name   string
		edit   func(front, back map[string]string)
		mac    string
		mtu    int
		sg     bool
		errHas string
	}{
		{name: "defaults", mac: "00:16:3e:00:00:02", mtu: 1500, sg: true},
		{name: "frontend mac when the backend has none", edit: func(f, b map[string]string) { delete(b, "mac") }, mac: "00:16:3e:00:00:01", mtu: 1500, sg: true},
		{name: "no mac", edit: func(f, b map[string]string) { delete(b, "mac"); delete(f, "mac") }, errHas: "mac"},
		{name: "bad backend mac", edit: func(f, b map[string]string) { b["mac"] = "zz" }, errHas: "backend key mac"},
		{name: "bad frontend mac", edit: func(f, b map[string]string) { delete(b, "mac"); f["mac"] = "01:00:00:00:00:00" }, errHas: "frontend key mac"},
		{name: "frontend mtu", edit: func(f, b map[string]string) { f["mtu"] = "9000"; b["mtu"] = "1400" }, mac: "00:16:3e:00:00:02", mtu: 9000, sg: true},
		{name: "backend mtu", edit: func(f, b map[string]string) { b["mtu"] = "1400" }, mac: "00:16:3e:00:00:02", mtu: 1400, sg: true},
		{name: "largest mtu", edit: func(f, b map[string]string) { f["mtu"] = "65517" }, mac: "00:16:3e:00:00:02", mtu: 65517, sg: true},
		{name: "mtu too large", edit: func(f, b map[string]string) { f["mtu"] = "65518" }, errHas: "frontend key mtu"},
		{name: "mtu too small", edit: func(f, b map[string]string) { b["mtu"] = "67" }, errHas: "backend key mtu"},
		{name: "mtu garbage", edit: func(f, b map[string]string) { f["mtu"] = "-1" }, errHas: "mtu"},
		{name: "no sg holds the mtu at 1500", edit: func(f, b map[string]string) { f["mtu"] = "9000"; delete(b, "feature-sg") }, mac: "00:16:3e:00:00:02", mtu: 1500},
		{name: "sg 0", edit: func(f, b map[string]string) { b["feature-sg"] = "0" }, mac: "00:16:3e:00:00:02", mtu: 1500},
		{name: "sg garbage", edit: func(f, b map[string]string) { b["feature-sg"] = "yes" }, errHas: "feature-sg"},
		{name: "no rx-copy", edit: func(f, b map[string]string) { delete(b, "feature-rx-copy") }, errHas: "feature-rx-copy"},
		{name: "rx-copy 0", edit: func(f, b map[string]string) { b["feature-rx-copy"] = "0" }, errHas: "feature-rx-copy"},
		{name: "rx-copy garbage", edit: func(f, b map[string]string) { b["feature-rx-copy"] = "1 " }, errHas: "feature-rx-copy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, b := base()
			if tc.edit != nil {
				tc.edit(f, b)
			}
			p, err := parseParams(f, b)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("parseParams = %+v, %v; want an error naming %q", p, err, tc.errHas)
				}
				return
			}
			if err != nil || p.mac.String() != tc.mac || p.mtu != tc.mtu || p.sg != tc.sg {
				t.Errorf("parseParams = %v %d %v, %v; want %s %d %v", p.mac, p.mtu, p.sg, err, tc.mac, tc.mtu, tc.sg)
			}
		})
	}
}

// FuzzParams feeds the xenstore values arbitrary strings: they are
// accepted into sane parameters or refused with an error, never panic.
func FuzzParams(f *testing.F) {
	f.Add("00:16:3e:00:00:01", "1500", "1", "1", "00:16:3E:00:00:02", "", uint8(0xff))
	f.Add("", "9000", "1", "0", "", "65535", uint8(0x3f))
	f.Add("01:00:00:00:00:00", "68", "4294967296", "1", "00:00:00:00:00:00", "x", uint8(0x15))
	f.Add("aa:bb:cc:dd:ee:ff", "0", "1", "", "fe:ff:ff:ff:ff:ff", "1500", uint8(0x2d))
	f.Fuzz(func(t *testing.T, fmac, fmtu, rxcopy, sg, bmac, bmtu string, present uint8) {
		front, back := map[string]string{}, map[string]string{}
		for i, kv := range []struct {
			m    map[string]string
			k, v string
		}{{front, "mac", fmac}, {front, "mtu", fmtu}, {back, "feature-rx-copy", rxcopy}, {back, "feature-sg", sg}, {back, "mac", bmac}, {back, "mtu", bmtu}} {
			if present&(1<<i) != 0 {
				kv.m[kv.k] = kv.v
			}
		}
		p, err := parseParams(front, back)
		if err != nil {
			return
		}
		if len(p.mac) != 6 || p.mac[0]&1 != 0 || p.mac.String() == "00:00:00:00:00:00" {
			t.Fatalf("accepted MAC %v", p.mac)
		}
		src, ok := back["mac"]
		if !ok {
			src = front["mac"]
		}
		if p.mac.String() != strings.ToLower(src) {
			t.Fatalf("MAC %v from %q", p.mac, src)
		}
		if p.mtu < MinMTU || p.mtu > MaxMTU || (!p.sg && p.mtu > DefaultMTU) {
			t.Fatalf("accepted MTU %d (sg %v)", p.mtu, p.sg)
		}
		if EthHeader+VLANTag+p.mtu > MaxTxSize {
			t.Fatalf("MTU %d makes frames larger than a tx request can say", p.mtu)
		}
	})
}

// TestParseParamsGSO: the backend's GSO features count only with
// feature-sg, and a malformed value is an error naming its key.
func TestParseParamsGSO(t *testing.T) {
	for _, tc := range []struct {
		name       string
		back       map[string]string
		gso4, gso6 bool
		errHas     string
	}{
		{name: "none"},
		{name: "both", back: map[string]string{keyGSOTCPv4: "1", keyGSOTCPv6: "1"}, gso4: true, gso6: true},
		{name: "v6 only", back: map[string]string{keyGSOTCPv4: "0", keyGSOTCPv6: "1"}, gso6: true},
		{name: "without sg", back: map[string]string{keySG: "0", keyGSOTCPv4: "1", keyGSOTCPv6: "1"}},
		{name: "v4 garbage", back: map[string]string{keyGSOTCPv4: "on"}, errHas: keyGSOTCPv4},
		{name: "v6 garbage", back: map[string]string{keyGSOTCPv6: "1\x00"}, errHas: keyGSOTCPv6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			back := map[string]string{"feature-rx-copy": "1", "feature-sg": "1", "mac": "00:16:3e:00:00:02"}
			for k, v := range tc.back {
				back[k] = v
			}
			p, err := parseParams(map[string]string{}, back)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("parseParams = %+v, %v; want an error naming %q", p, err, tc.errHas)
				}
				return
			}
			if err != nil || p.gso4 != tc.gso4 || p.gso6 != tc.gso6 {
				t.Errorf("parseParams: gso4 %v gso6 %v, %v; want %v %v", p.gso4, p.gso6, err, tc.gso4, tc.gso6)
			}
		})
	}
}

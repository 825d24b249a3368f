package dhcp

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpOpts compares Messages and Leases: netip values by ==, empty and nil
// slices alike.
var cmpOpts = cmp.Options{
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}),
	cmpopts.EquateEmpty(),
}

var (
	testMAC    = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	testServer = netip.MustParseAddr("192.168.1.1")
	testYI     = netip.MustParseAddr("192.168.1.100")
)

// rawReply builds a server reply byte by byte, independently of Marshal:
// the BOOTP header at the offsets of RFC 2131 figure 1, the cookie, then
// opts verbatim (codes, lengths and values, End included by the caller).
func rawReply(xid uint32, chaddr [6]byte, yiaddr netip.Addr, opts ...byte) []byte {
	b := make([]byte, 240, 240+len(opts))
	b[0], b[1], b[2] = 2, 1, 6
	b[4], b[5], b[6], b[7] = byte(xid>>24), byte(xid>>16), byte(xid>>8), byte(xid)
	y := yiaddr.As4()
	copy(b[16:20], y[:])
	copy(b[28:34], chaddr[:])
	copy(b[236:240], []byte{99, 130, 83, 99})
	return append(b, opts...)
}

// offerOpts are the options of a typical OFFER or ACK from dnsmasq.
func leaseOpts(t MessageType) []byte {
	return []byte{
		53, 1, byte(t),
		54, 4, 192, 168, 1, 1,
		51, 4, 0, 0, 0x0e, 0x10, // 3600 s
		58, 4, 0, 0, 0x07, 0x08, // 1800 s
		59, 4, 0, 0, 0x0c, 0x4e, // 3150 s
		1, 4, 255, 255, 255, 0,
		28, 4, 192, 168, 1, 255,
		3, 4, 192, 168, 1, 1,
		6, 8, 192, 168, 1, 1, 8, 8, 8, 8,
		15, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e',
		12, 4, 'h', 'o', 's', 't',
		26, 2, 0x05, 0xdc,
		255,
	}
}

func TestHeaderOffsets(t *testing.T) {
	// Each field gets distinct bytes, so a field read at a wrong offset
	// or with a wrong size shows.
	b := make([]byte, 300)
	for i := range 236 {
		b[i] = byte(i)
	}
	copy(b[236:], []byte{99, 130, 83, 99, 255})
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{
		Op: 0, HType: 1, HLen: 2, Hops: 3,
		Xid:    0x04050607,
		Secs:   0x0809,
		Flags:  0x0a0b,
		CIAddr: netip.AddrFrom4([4]byte{12, 13, 14, 15}),
		YIAddr: netip.AddrFrom4([4]byte{16, 17, 18, 19}),
		SIAddr: netip.AddrFrom4([4]byte{20, 21, 22, 23}),
		GIAddr: netip.AddrFrom4([4]byte{24, 25, 26, 27}),
	}
	for i := range want.CHAddr {
		want.CHAddr[i] = byte(28 + i)
	}
	for i := range want.SName {
		want.SName[i] = byte(44 + i)
	}
	for i := range want.File {
		want.File[i] = byte(108 + i)
	}
	if d := cmp.Diff(want, m, cmpOpts); d != "" {
		t.Errorf("Parse (-want +got):\n%s", d)
	}
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, b) {
		t.Errorf("Marshal:\n got %x\nwant %x", out, b)
	}
	if HeaderLen != 240 || offCookie != 236 || offCHAddr+chaddrLen != offSName || offSName+snameLen != offFile || offFile+fileLen != offCookie {
		t.Errorf("inconsistent layout constants")
	}
}

func TestParseOffer(t *testing.T) {
	m, err := Parse(rawReply(0xdeadbeef, testMAC, testYI, leaseOpts(Offer)...))
	if err != nil {
		t.Fatal(err)
	}
	if m.Op != BootReply || m.Xid != 0xdeadbeef || m.YIAddr != testYI || !bytes.Equal(m.HWAddr(), testMAC[:]) {
		t.Errorf("header: %+v", m)
	}
	if m.Type() != Offer {
		t.Errorf("Type = %v", m.Type())
	}
	if a, ok := m.Options.Addr(OptServerID); !ok || a != testServer {
		t.Errorf("server id %v %v", a, ok)
	}
	if d, ok := m.Options.Seconds(OptLeaseTime); !ok || d.Seconds() != 3600 {
		t.Errorf("lease %v %v", d, ok)
	}
	if n, ok := m.Options.SubnetMask(); !ok || n != 24 {
		t.Errorf("mask %v %v", n, ok)
	}
	dns := m.Options.Addrs(OptDNS)
	if d := cmp.Diff([]netip.Addr{testServer, netip.MustParseAddr("8.8.8.8")}, dns, cmpOpts); d != "" {
		t.Errorf("dns: %s", d)
	}
	if v, ok := m.Options.Uint16(OptMTU); !ok || v != 1500 {
		t.Errorf("mtu %v", v)
	}
	if b, _ := m.Options.Get(OptDomainName); string(b) != "example" {
		t.Errorf("domain %q", b)
	}
}

func TestParseOptions(t *testing.T) {
	long := bytes.Repeat([]byte{7}, 300)
	for _, tc := range []struct {
		name string
		msg  []byte
		want Options
		err  error
	}{
		{name: "pads and no end", msg: rawReply(1, testMAC, testYI, 0, 0, 53, 1, 5, 0), want: Options{{OptMessageType, []byte{5}}}},
		{name: "after end ignored", msg: rawReply(1, testMAC, testYI, 53, 1, 5, 255, 1, 2, 3), want: Options{{OptMessageType, []byte{5}}}},
		{name: "empty option", msg: rawReply(1, testMAC, testYI, 80, 0, 255), want: Options{{80, []byte{}}}},
		{name: "split option joined", msg: rawReply(1, testMAC, testYI, 6, 4, 1, 1, 1, 1, 53, 1, 2, 6, 4, 2, 2, 2, 2, 255),
			want: Options{{OptDNS, []byte{1, 1, 1, 1, 2, 2, 2, 2}}, {OptMessageType, []byte{2}}}},
		{name: "long option", msg: rawReply(1, testMAC, testYI, append(append(append([]byte{43, 255}, long[:255]...), 43, 45), long[255:]...)...),
			want: Options{{43, long}}},
		{name: "no length", msg: rawReply(1, testMAC, testYI, 53), err: ErrOption},
		{name: "past end", msg: rawReply(1, testMAC, testYI, 53, 2, 5), err: ErrOption},
		{name: "overload zero", msg: rawReply(1, testMAC, testYI, 52, 1, 0, 255), err: ErrOverload},
		{name: "overload 4", msg: rawReply(1, testMAC, testYI, 52, 1, 4, 255), err: ErrOverload},
		{name: "overload long", msg: rawReply(1, testMAC, testYI, 52, 2, 1, 1, 255), err: ErrOverload},
		{name: "overload twice", msg: rawReply(1, testMAC, testYI, 52, 1, 1, 52, 1, 1, 255), err: ErrOverload},
		{name: "short", msg: make([]byte, 239), err: ErrShort},
		{name: "no cookie", msg: make([]byte, 300), err: ErrCookie},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.msg)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if d := cmp.Diff(tc.want, m.Options, cmpOpts); d != "" {
				t.Errorf("options (-want +got):\n%s", d)
			}
			checkRoundTrip(t, m)
		})
	}
}

func TestParseOverload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		overload byte
		want     Options
	}{
		// Order: options field, then file, then sname (RFC 2131 §4.1).
		{"file", 1, Options{{OptMessageType, []byte{5}}, {OptDNS, []byte{1, 1, 1, 1}}}},
		{"sname", 2, Options{{OptMessageType, []byte{5}}, {OptDomainName, []byte("x")}}},
		{"both", 3, Options{{OptMessageType, []byte{5}}, {OptDNS, []byte{1, 1, 1, 1}}, {OptDomainName, []byte("x")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := rawReply(1, testMAC, testYI, 53, 1, 5, 52, 1, tc.overload, 255)
			copy(b[offFile:], []byte{6, 4, 1, 1, 1, 1, 52, 1, 2, 255})
			copy(b[offSName:], []byte{0, 15, 1, 'x', 255})
			m, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, m.Options, cmpOpts); d != "" {
				t.Errorf("options (-want +got):\n%s", d)
			}
			if tc.overload&1 != 0 && m.File != [128]byte{} || tc.overload&2 != 0 && m.SName != [64]byte{} {
				t.Errorf("overloaded fields kept as names")
			}
			if tc.overload&1 == 0 && m.File[0] != 6 || tc.overload&2 == 0 && m.SName[1] != 15 {
				t.Errorf("names lost")
			}
			checkRoundTrip(t, m)
		})
	}
	b := rawReply(1, testMAC, testYI, 53, 1, 5, 52, 1, 1, 255)
	copy(b[offFile:], []byte{6, 200})
	if _, err := Parse(b); !errors.Is(err, ErrOption) {
		t.Errorf("bad option in file: %v", err)
	}
}

func TestMarshal(t *testing.T) {
	m := &Message{Op: BootRequest, HType: HTypeEthernet, HLen: 6, Xid: 42, Flags: FlagBroadcast, CIAddr: testYI}
	copy(m.CHAddr[:], testMAC[:])
	m.Options.Set(OptMessageType, []byte{byte(Request)})
	m.Options.Set(OptParamRequest, []byte{1, 3, 6})
	m.Options.Set(OptMessageType, []byte{byte(Discover)})
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 300 {
		t.Errorf("len %d, want padded to 300", len(b))
	}
	want := []byte{53, 1, 1, 55, 3, 1, 3, 6, 255, 0}
	if !bytes.Equal(b[240:250], want) {
		t.Errorf("options %v, want %v", b[240:250], want)
	}
	if b[10] != 0x80 || b[11] != 0 || !bytes.Equal(b[12:16], []byte{192, 168, 1, 100}) {
		t.Errorf("flags or ciaddr: %x", b[10:16])
	}
	checkRoundTrip(t, m)

	for _, bad := range []*Message{
		{CIAddr: netip.MustParseAddr("::1")},
		{Options: Options{{OptEnd, nil}}},
		{Options: Options{{OptPad, nil}}},
		{Options: Options{{OptOverload, []byte{1}}}},
	} {
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("Marshal(%+v) succeeded", bad)
		}
	}
}

// checkRoundTrip checks that m survives Marshal and Parse. Invalid
// addresses come back as 0.0.0.0, so they are normalised first.
func checkRoundTrip(t *testing.T, m *Message) {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal(m)): %v", err)
	}
	want := *m
	for _, a := range []*netip.Addr{&want.CIAddr, &want.YIAddr, &want.SIAddr, &want.GIAddr} {
		if !a.IsValid() {
			*a = netip.IPv4Unspecified()
		}
	}
	if d := cmp.Diff(&want, got, cmpOpts); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}

func TestSubnetMask(t *testing.T) {
	for _, tc := range []struct {
		mask []byte
		bits int
		ok   bool
	}{
		{[]byte{255, 255, 255, 0}, 24, true},
		{[]byte{0, 0, 0, 0}, 0, true},
		{[]byte{255, 255, 255, 255}, 32, true},
		{[]byte{255, 255, 254, 0}, 23, true},
		{[]byte{255, 0, 255, 0}, 0, false},
		{[]byte{255, 255, 255}, 0, false},
	} {
		bits, ok := Options{{OptSubnetMask, tc.mask}}.SubnetMask()
		if bits != tc.bits || ok != tc.ok {
			t.Errorf("%v: %d %v, want %d %v", tc.mask, bits, ok, tc.bits, tc.ok)
		}
	}
}

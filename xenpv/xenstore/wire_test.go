package xenstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The numbers below are copied from shared/docs/xen-abi.md (Xenstore) and
// xs_wire.h, not from the constants under test.

func TestRingLayoutMatchesDoc(t *testing.T) {
	tests := []struct {
		name      string
		got, want int
	}{
		{"req", RingReqOff, 0},
		{"rsp", RingRspOff, 1024},
		{"ring size", RingSize, 1024},
		{"req_cons", RingReqConsOff, 2048},
		{"req_prod", RingReqProdOff, 2052},
		{"rsp_cons", RingRspConsOff, 2056},
		{"rsp_prod", RingRspProdOff, 2060},
		{"server_features", RingServerFeaturesOff, 2064},
		{"connection", RingConnectionOff, 2068},
		{"error", RingErrorOff, 2072},
		{"evtchn_port", RingEvtchnPortOff, 2076},
		{"interface size", RingInterfaceSize, 2080},
		{"header size", HeaderSize, 16},
		{"payload max", PayloadMax, 4096},
		{"abs path max", AbsPathMax, 3072},
		{"rel path max", RelPathMax, 2048},
		{"feature reconnection", FeatureReconnection, 1},
		{"feature error", FeatureError, 2},
		{"error ringidx", RingErrorRingIdx, 2},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestRingIndicesLandAtDocOffsets(t *testing.T) {
	page := make([]byte, 4096)
	r := NewRingConn(page, func() error { return nil }, func(ctx context.Context) error { return ctx.Err() })
	if _, err := r.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(page[2052:]); got != 3 {
		t.Errorf("req_prod at 2052 = %d, want 3", got)
	}
	if got := string(page[0:3]); got != "abc" {
		t.Errorf("req data at 0 = %q", got)
	}
	copy(page[1024:], "xy")
	binary.LittleEndian.PutUint32(page[2060:], 2) // rsp_prod
	buf := make([]byte, 8)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "xy" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if got := binary.LittleEndian.Uint32(page[2056:]); got != 2 {
		t.Errorf("rsp_cons at 2056 = %d, want 2", got)
	}
}

func TestMessageTypesMatchDoc(t *testing.T) {
	want := map[MsgType]uint32{
		TypeDirectory: 1, TypeRead: 2, TypeGetPerms: 3, TypeWatch: 4, TypeUnwatch: 5,
		TypeTransactionStart: 6, TypeTransactionEnd: 7, TypeGetDomainPath: 10, TypeWrite: 11,
		TypeMkdir: 12, TypeRm: 13, TypeSetPerms: 14, TypeWatchEvent: 15, TypeError: 16,
		TypeResetWatches: 21, TypeDirectoryPart: 22, TypeControl: 0, TypeIntroduce: 8,
		TypeRelease: 9, TypeIsDomainIntroduced: 17, TypeResume: 18, TypeSetTarget: 19,
		TypeGetFeature: 23, TypeSetFeature: 24, TypeGetQuota: 25, TypeSetQuota: 26,
	}
	for typ, n := range want {
		if uint32(typ) != n {
			t.Errorf("%v = %d, want %d", typ, uint32(typ), n)
		}
		if !typ.Valid() {
			t.Errorf("%v not valid", typ)
		}
	}
	for _, bad := range []MsgType{20, 27, 1000, TypeInvalid} {
		if bad.Valid() {
			t.Errorf("%v valid", bad)
		}
	}
	if s := MsgType(20).String(); s != "MsgType(20)" {
		t.Errorf("String of removed type = %q", s)
	}
	if s := TypeWatchEvent.String(); s != "WATCH_EVENT" {
		t.Errorf("String = %q", s)
	}
}

func TestHeaderLayout(t *testing.T) {
	h := Header{Type: TypeWrite, ReqID: 0x01020304, TxID: 0x0a0b0c0d, Len: 0x11}
	var b [HeaderSize]byte
	h.Put(b[:])
	want := []byte{11, 0, 0, 0, 4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a, 0x11, 0, 0, 0}
	if diff := cmp.Diff(want, b[:]); diff != "" {
		t.Errorf("encoding (-want +got):\n%s", diff)
	}
	got, err := ParseHeader(b[:])
	if err != nil || got != h {
		t.Errorf("ParseHeader = %+v, %v", got, err)
	}
}

func hdr(typ, req, tx, n uint32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, typ)
	binary.LittleEndian.PutUint32(b[4:], req)
	binary.LittleEndian.PutUint32(b[8:], tx)
	binary.LittleEndian.PutUint32(b[12:], n)
	return b
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Message
		wantErr error
	}{
		{"read reply", append(hdr(2, 7, 0, 3), "abc"...), Message{Header{TypeRead, 7, 0, 3}, []byte("abc")}, nil},
		{"empty payload", hdr(16, 1, 2, 0), Message{Header{TypeError, 1, 2, 0}, []byte{}}, nil},
		{"max payload", append(hdr(2, 1, 0, 4096), make([]byte, 4096)...), Message{Header{TypeRead, 1, 0, 4096}, make([]byte, 4096)}, nil},
		{"oversize", append(hdr(2, 1, 0, 4097), make([]byte, 4097)...), Message{}, ErrProtocol},
		{"huge len", hdr(2, 1, 0, 0xffffffff), Message{}, ErrProtocol},
		{"garbage type", hdr(0xdeadbeef, 1, 0, 0), Message{}, ErrProtocol},
		{"removed type", hdr(20, 1, 0, 0), Message{}, ErrProtocol},
		{"short header", hdr(2, 1, 0, 0)[:9], Message{}, io.ErrUnexpectedEOF},
		{"eof", nil, Message{}, io.EOF},
		{"short payload", append(hdr(2, 1, 0, 10), "abc"...), Message{}, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ReadMessage(bytes.NewReader(tc.in))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, m); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 100, 4096} {
		payload := bytes.Repeat([]byte{0xa5}, n)
		b, err := MarshalMessage(TypeWrite, 9, 4, payload)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		want := Message{Header{TypeWrite, 9, 4, uint32(n)}, payload}
		if diff := cmp.Diff(want, m); diff != "" {
			t.Errorf("n=%d (-want +got):\n%s", n, diff)
		}
	}
	if _, err := MarshalMessage(TypeWrite, 1, 0, make([]byte, 4097)); !errors.Is(err, syscall.E2BIG) {
		t.Errorf("oversize marshal: %v", err)
	}
}

func TestParseError(t *testing.T) {
	tests := []struct {
		in       string
		name     string
		msg      string
		errno    syscall.Errno
		protocol bool
	}{
		{"ENOENT\x00", "ENOENT", "", syscall.ENOENT, false},
		{"EAGAIN\x00", "EAGAIN", "", syscall.EAGAIN, false},
		{"EACCES\x00", "EACCES", "", syscall.EACCES, false},
		{"EINVAL\x00", "EINVAL", "", syscall.EINVAL, false},
		{"EEXIST\x00", "EEXIST", "", syscall.EEXIST, false},
		{"E2BIG\x00", "E2BIG", "", syscall.E2BIG, false},
		{"EQUOTA\x00", "EQUOTA", "", syscall.EDQUOT, false},
		{"ENOSPC", "ENOSPC", "", syscall.ENOSPC, false},
		{"EINVAL: Could not convert 'x' to int\x00", "EINVAL", "Could not convert 'x' to int", syscall.EINVAL, false},
		{"EWHATEVER\x00", "EWHATEVER", "", 0, false},
		{"", "", "", 0, true},
		{"\x00", "", "", 0, true},
		{"OK\x00", "", "", 0, true},
		{"enoent\x00", "", "", 0, true},
		{"ENOENT\x00junk", "", "", 0, true},
		{"E\x00", "", "", 0, true},
		{"E" + strings.Repeat("X", 40) + "\x00", "", "", 0, true},
	}
	for _, tc := range tests {
		err := parseError([]byte(tc.in))
		if tc.protocol {
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("parseError(%q) = %v, want protocol error", tc.in, err)
			}
			continue
		}
		var xe *Error
		if !errors.As(err, &xe) {
			t.Errorf("parseError(%q) = %v", tc.in, err)
			continue
		}
		if xe.Name != tc.name || xe.Msg != tc.msg || xe.Errno() != tc.errno {
			t.Errorf("parseError(%q) = %+v errno %v", tc.in, xe, xe.Errno())
		}
		if tc.errno != 0 && !errors.Is(err, tc.errno) {
			t.Errorf("errors.Is(%v, %v) false", err, tc.errno)
		}
	}
	err := parseError([]byte("ENOENT\x00"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) || !errors.Is(err, &Error{Name: "ENOENT"}) {
		t.Error("ENOENT does not match fs.ErrNotExist / itself, or matches fs.ErrExist")
	}
}

func TestValidatePath(t *testing.T) {
	tests := []struct {
		p  string
		ok bool
	}{
		{"/", true},
		{"/local/domain/0", true},
		{"device/vif/0", true},
		{"@releaseDomain", true},
		{"/a-b_c@d/E9", true},
		{"/" + strings.Repeat("a", 3071), true},
		{"/" + strings.Repeat("a", 3072), false},
		{strings.Repeat("a", 2048), true},
		{strings.Repeat("a", 2049), false},
		{"", false},
		{"//", false},
		{"/a//b", false},
		{"/a/", false},
		{"a/", false},
		{"/a b", false},
		{"/a.b", false},
		{"/a\x00b", false},
		{"/ä", false},
	}
	for _, tc := range tests {
		err := ValidatePath(tc.p)
		if (err == nil) != tc.ok {
			t.Errorf("ValidatePath(%.20q) = %v, want ok=%v", tc.p, err, tc.ok)
		}
		if err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("ValidatePath(%.20q) error %v is not EINVAL", tc.p, err)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{"", nil, false},
		{"\x00", []string{""}, false},
		{"a\x00bc\x00", []string{"a", "bc"}, false},
		{"a\x00b", nil, true},
	}
	for _, tc := range tests {
		got, err := splitStrings([]byte(tc.in))
		if tc.bad {
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("splitStrings(%q) err = %v", tc.in, err)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("splitStrings(%q) = %q, %v", tc.in, got, err)
		}
		if len(tc.want) > 0 && string(joinStrings(tc.want...)) != tc.in {
			t.Errorf("joinStrings(%q) = %q", tc.want, joinStrings(tc.want...))
		}
	}
}

func TestParseReplies(t *testing.T) {
	t.Run("names", func(t *testing.T) {
		for in, ok := range map[string]bool{
			"":                true,
			"a\x00b-1\x00":    true,
			"a/b\x00":         false,
			"\x00":            false,
			"a\x00\x00":       false,
			"a b\x00":         false,
			"unterminated":    false,
			"x\x00y\x00zzz":   false,
			"@special-ok\x00": true,
		} {
			if _, err := parseNames([]byte(in)); (err == nil) != ok {
				t.Errorf("parseNames(%q) = %v, want ok=%v", in, err, ok)
			}
		}
	})
	t.Run("perms", func(t *testing.T) {
		got, err := parsePerms([]byte("n0\x00r5\x00b65535\x00w12\x00"))
		want := []Perm{{0, AccessNone}, {5, AccessRead}, {65535, AccessReadWrite}, {12, AccessWrite}}
		if err != nil || !cmp.Equal(got, want) {
			t.Errorf("parsePerms = %v, %v", got, err)
		}
		for _, bad := range []string{"", "x1\x00", "r\x00", "r65536\x00", "r-1\x00", "r01\x00", "r1", "r 1\x00", "r+1\x00"} {
			if _, err := parsePerms([]byte(bad)); !errors.Is(err, ErrProtocol) {
				t.Errorf("parsePerms(%q) = %v, want protocol error", bad, err)
			}
		}
	})
	t.Run("txid", func(t *testing.T) {
		for in, want := range map[string]uint32{"1\x00": 1, "4294967295\x00": 0xffffffff, "17": 17} {
			if got, err := parseTxID([]byte(in)); err != nil || got != want {
				t.Errorf("parseTxID(%q) = %d, %v", in, got, err)
			}
		}
		for _, bad := range []string{"", "\x00", "0\x00", "4294967296\x00", "-1\x00", "01\x00", "1\x001\x00", "x\x00", "99999999999999999999\x00"} {
			if _, err := parseTxID([]byte(bad)); !errors.Is(err, ErrProtocol) {
				t.Errorf("parseTxID(%q) = %v, want protocol error", bad, err)
			}
		}
	})
	t.Run("ack", func(t *testing.T) {
		for in, ok := range map[string]bool{"OK\x00": true, "OK": true, "NO\x00": false, "OK\x00x": false, "": false} {
			if err := ack([]byte(in), nil); (err == nil) != ok {
				t.Errorf("ack(%q) = %v", in, err)
			}
		}
	})
}

func TestDomIDAndPaths(t *testing.T) {
	for in, want := range map[string]DomID{"0": 0, "7": 7, "65535": 65535} {
		if got, err := ParseDomID(in); err != nil || got != want {
			t.Errorf("ParseDomID(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "65536", "-1", "+1", "01", "1x", " 1", "123456"} {
		if _, err := ParseDomID(bad); err == nil {
			t.Errorf("ParseDomID(%q) accepted", bad)
		}
	}
	if got := HomePath(12); got != "/local/domain/12" {
		t.Errorf("HomePath = %q", got)
	}
	for in, want := range map[string]string{"a/b": "/local/domain/3/a/b", "/x": "/x", "@releaseDomain": "@releaseDomain"} {
		if got := ResolvePath(3, in); got != want {
			t.Errorf("ResolvePath(3, %q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"device/vif", "0", "state"}, "device/vif/0/state"},
		{[]string{"/backend/", "/x"}, "/backend/x"},
		{[]string{"", "a", ""}, "a"},
		{[]string{"/", "a"}, "/a"},
	} {
		if got := Join(tc.in...); got != tc.want {
			t.Errorf("Join(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

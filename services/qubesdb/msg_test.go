package qubesdb

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The numbers come from /work/shared/docs/qubes.md ("Header 72 bytes: type
// u8@0, path char[64]@1, 3 pad, data_len u32@68", the type list, "Max path
// 64, max data 3072").
func TestLayoutMatchesDocs(t *testing.T) {
	got := map[string]int{
		"HeaderSize": HeaderSize, "TypeOffset": TypeOffset, "PathOffset": PathOffset,
		"PathSize": PathSize, "PadOffset": PadOffset, "PadSize": DataLenOffset - PadOffset,
		"DataLenOffset": DataLenOffset, "DataLenEnd": DataLenOffset + 4, "MaxData": MaxData,
	}
	want := map[string]int{
		"HeaderSize": 72, "TypeOffset": 0, "PathOffset": 1, "PathSize": 64, "PadOffset": 65,
		"PadSize": 3, "DataLenOffset": 68, "DataLenEnd": 72, "MaxData": 3072,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("layout (-docs +code):\n%s", d)
	}
}

func TestMsgTypeValuesMatchDocs(t *testing.T) {
	got := map[string]MsgType{}
	for i := MsgType(0); i <= maxMsgType; i++ {
		got[i.String()] = i
	}
	want := map[string]MsgType{
		"READ": 0, "WRITE": 1, "MULTIREAD": 2, "LIST": 3, "RM": 4, "WATCH": 5, "UNWATCH": 6,
		"RESP_OK": 7, "RESP_ERROR_NOENT": 8, "RESP_ERROR": 9, "RESP_READ": 10,
		"RESP_MULTIREAD": 11, "RESP_LIST": 12, "RESP_WATCH": 13,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("types (-docs +code):\n%s", d)
	}
	if s := MsgType(14).String(); s != "MsgType(14)" {
		t.Errorf("MsgType(14).String() = %q", s)
	}
}

// rawHeader builds wire bytes by hand, independently of the codec.
func rawHeader(typ byte, path string, dataLen uint32) []byte {
	b := make([]byte, 72)
	b[0] = typ
	copy(b[1:65], path)
	b[68] = byte(dataLen)
	b[69] = byte(dataLen >> 8)
	b[70] = byte(dataLen >> 16)
	b[71] = byte(dataLen >> 24)
	return b
}

func TestHeaderMarshal(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		want []byte
	}{
		{"multiread-empty", Header{Type: CmdMultiread}, rawHeader(2, "", 0)},
		{"write", Header{Type: CmdWrite, Path: "/qubes-ip", DataLen: 9}, rawHeader(1, "/qubes-ip", 9)},
		{"max-path", Header{Type: RespOK, Path: "/" + strings.Repeat("a", 62)}, rawHeader(7, "/"+strings.Repeat("a", 62), 0)},
		{"max-data", Header{Type: RespMultiread, Path: "/x", DataLen: 3071}, rawHeader(11, "/x", 3071)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.h.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("bytes (-want +got):\n%s", d)
			}
			var back Header
			if err := back.UnmarshalBinary(got); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.h, back); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
		})
	}
}

func TestHeaderMarshalRefuses(t *testing.T) {
	for _, h := range []Header{
		{Type: CmdWrite, Path: "/" + strings.Repeat("a", 63)},
		{Type: CmdWrite, Path: "/a b"},
		{Type: CmdWrite, Path: "/a", DataLen: 3072},
	} {
		if _, err := h.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary(%+v) succeeded", h)
		}
	}
}

func TestHeaderUnmarshal(t *testing.T) {
	unterminated := rawHeader(1, strings.Repeat("a", 64), 0)
	afterNUL := rawHeader(1, "/a", 0)
	afterNUL[10] = 'z' // bytes after the NUL are ignored, as by the daemon
	afterNUL[66] = 0xff
	tests := []struct {
		name    string
		in      []byte
		want    Header
		wantErr string
	}{
		{name: "ok", in: rawHeader(1, "/qubes-ip", 8), want: Header{Type: CmdWrite, Path: "/qubes-ip", DataLen: 8}},
		{name: "all-chars", in: rawHeader(7, "/Az09_/.:@-", 0), want: Header{Type: RespOK, Path: "/Az09_/.:@-"}},
		{name: "garbage-after-nul", in: afterNUL, want: Header{Type: CmdWrite, Path: "/a"}},
		{name: "short", in: make([]byte, 71), wantErr: "header is 71 bytes"},
		{name: "unknown-type", in: rawHeader(14, "/a", 0), wantErr: "unknown message type 14"},
		{name: "type-255", in: rawHeader(255, "/a", 0), wantErr: "unknown message type 255"},
		{name: "no-nul", in: unterminated, wantErr: "not NUL-terminated"},
		{name: "bad-char", in: rawHeader(1, "/a b", 0), wantErr: "forbidden byte 0x20"},
		{name: "high-byte", in: rawHeader(1, "/a\xc3\xa9", 0), wantErr: "forbidden byte 0xc3"},
		{name: "leading-dash", in: rawHeader(1, "-a", 0), wantErr: "starts with '-'"},
		{name: "data-too-long", in: rawHeader(1, "/a", 3072), wantErr: "announces 3072 data bytes"},
		{name: "data-huge", in: rawHeader(1, "/a", 0xffffffff), wantErr: "announces 4294967295"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Header
			err := h.UnmarshalBinary(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, h); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestCheckers(t *testing.T) {
	tests := []struct {
		in            string
		path, key, rm bool
	}{
		{"/qubes-ip", true, true, true},
		{"/qubes-firewall/10.137.0.5/0000", true, true, true},
		{"/mapped-ip/10.137.0.5/visible-ip", true, true, true},
		{"/qubes-firewall/", true, false, true},
		{"/", true, false, true},
		{"relative", true, false, false},
		{"", false, false, false},
		{"-x", false, false, false},
		{"/a\x00b", false, false, false},
		{"/a\nb", false, false, false},
		{"/" + strings.Repeat("x", 62), true, true, true},
		{"/" + strings.Repeat("x", 63), false, false, false},
	}
	for _, tt := range tests {
		got := [3]bool{CheckPath(tt.in) == nil, CheckKey(tt.in) == nil, checkRmPath(tt.in) == nil}
		if want := [3]bool{tt.path, tt.key, tt.rm}; got != want {
			t.Errorf("%q: path/key/rm ok = %v, want %v", tt.in, got, want)
		}
	}
	for _, v := range []struct {
		v  []byte
		ok bool
	}{
		{nil, true}, {[]byte("10.137.0.1"), true}, {bytes.Repeat([]byte("a"), 3071), true},
		{bytes.Repeat([]byte("a"), 3072), false}, {[]byte("a\x00"), false},
	} {
		if got := CheckValue(v.v) == nil; got != v.ok {
			t.Errorf("CheckValue(%d bytes %.8q) ok = %v, want %v", len(v.v), v.v, got, v.ok)
		}
	}
}

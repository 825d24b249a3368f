package qrexec

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Values from /work/shared/docs/qubes.md and libqrexec/qrexec.h.
func TestMsgTypeValuesMatchDocs(t *testing.T) {
	got := map[string]uint32{}
	for typ := range msgTypeNames {
		got[typ.String()] = uint32(typ)
	}
	want := map[string]uint32{
		"EXEC_CMDLINE": 0x200, "JUST_EXEC": 0x201, "SERVICE_CONNECT": 0x202, "SERVICE_REFUSED": 0x203,
		"TRIGGER_SERVICE": 0x210, "CONNECTION_TERMINATED": 0x211, "TRIGGER_SERVICE3": 0x212,
		"TRIGGER_SERVICE4": 0x213, "HELLO": 0x300, "DATA_STDIN": 0x190, "DATA_STDOUT": 0x191,
		"DATA_STDERR": 0x192, "DATA_EXIT_CODE": 0x193,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-docs +code):\n%s", d)
	}
	sizes := map[string]int{
		"header": HeaderSize, "peer_info": PeerInfoSize, "exec_params": ExecParamsSize,
		"service_params": ServiceParamsSize, "trigger3": TriggerParams3Size, "trigger4": TriggerParams4Size,
		"chunk": MaxChunk(3), "chunk4": MaxChunk(4), "chunk2": MaxChunk(2),
	}
	wantSizes := map[string]int{
		"header": 8, "peer_info": 4, "exec_params": 8, "service_params": 32, "trigger3": 96,
		"trigger4": 160, "chunk": 65536, "chunk4": 65536, "chunk2": 4096,
	}
	if d := cmp.Diff(wantSizes, sizes); d != "" {
		t.Errorf("sizes (-docs +code):\n%s", d)
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestHeaderBytes(t *testing.T) {
	b, _ := Header{Type: MsgExecCmdline, Len: 0x01020304}.MarshalBinary()
	if d := cmp.Diff(cat(le32(0x200), le32(0x01020304)), b); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	var h Header
	if err := h.UnmarshalBinary(b); err != nil || h != (Header{MsgExecCmdline, 0x01020304}) {
		t.Errorf("UnmarshalBinary = %+v, %v", h, err)
	}
	if err := h.UnmarshalBinary(b[:7]); err == nil {
		t.Error("7-byte header accepted")
	}
}

func TestExecParams(t *testing.T) {
	ident := make([]byte, 32)
	copy(ident, "SOCKET7")
	tests := []struct {
		name    string
		in      []byte
		want    ExecParams
		wantErr string
	}{
		{"exec", cat(le32(5), le32(513), []byte("user:QUBESRPC qubes.Foo dom0\x00")), ExecParams{5, 513, "user:QUBESRPC qubes.Foo dom0"}, ""},
		{"service-connect-ident", cat(le32(0), le32(514), ident), ExecParams{0, 514, "SOCKET7"}, ""},
		{"empty-cmdline", cat(le32(1), le32(2), []byte{0}), ExecParams{1, 2, ""}, ""},
		{"no-cmdline", cat(le32(1), le32(2)), ExecParams{}, "want more than 8"},
		{"short", []byte{1, 2, 3}, ExecParams{}, "want more than 8"},
		{"no-nul", cat(le32(1), le32(2), []byte("user:cmd")), ExecParams{}, "not NUL-terminated"},
		{"junk-after-nul", cat(le32(1), le32(2), []byte("a\x00b\x00")), ExecParams{}, "byte 0x62 at 2 after its NUL"},
		{"too-long", cat(le32(1), le32(2), []byte(strings.Repeat("a", 65536)), []byte{0}), ExecParams{}, "65536 bytes, limit is 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p ExecParams
			err := p.UnmarshalBinary(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, p); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	b, _ := ExecParams{7, 600, "u:c"}.MarshalBinary()
	if d := cmp.Diff(cat(le32(7), le32(600), []byte("u:c\x00")), b); d != "" {
		t.Errorf("MarshalBinary (-want +got):\n%s", d)
	}
}

func TestDecodePeerInfo(t *testing.T) {
	tests := []struct {
		in        []byte
		peer, use uint32
		ok        bool
	}{
		{le32(3), 3, 3, true},
		{le32(4), 4, 4, true},
		{le32(5), 5, 4, true},
		{le32(0xffffffff), 0xffffffff, 4, true},
		{le32(2), 2, 0, false},
		{le32(0), 0, 0, false},
		{[]byte{4, 0, 0}, 0, 0, false},
		{[]byte{4, 0, 0, 0, 0}, 0, 0, false},
	}
	for _, tt := range tests {
		peer, use, err := DecodePeerInfo(tt.in)
		if (err == nil) != tt.ok || use != tt.use || (tt.ok && peer != tt.peer) {
			t.Errorf("DecodePeerInfo(%x) = %d, %d, %v; want %d, %d, ok=%v", tt.in, peer, use, err, tt.peer, tt.use, tt.ok)
		}
	}
}

func TestDecodeServiceParams(t *testing.T) {
	pad := func(s string) []byte { b := make([]byte, 32); copy(b, s); return b }
	tests := []struct {
		in      []byte
		want    string
		wantErr string
	}{
		{pad("CALL1"), "CALL1", ""},
		{pad("SOCKET 12_a-b.c"), "SOCKET 12_a-b.c", ""},
		{pad(""), "", "must be 1 to 31"},
		{pad("a/b"), "", "forbidden byte 0x2f"},
		{bytes.Repeat([]byte("a"), 32), "", "not NUL-terminated"},
		{append(pad("a")[:31], 'x'), "", "after its NUL"},
		{pad("a")[:31], "", "want 32"},
	}
	for _, tt := range tests {
		got, err := DecodeServiceParams(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("DecodeServiceParams(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("DecodeServiceParams(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestTriggerParamsEncode(t *testing.T) {
	field := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	p := TriggerParams{Target: "@default", Ident: "CALL1", Service: "qubes.Filecopy+x"}
	typ, b, err := p.Encode(3)
	if err != nil {
		t.Fatal(err)
	}
	want3 := cat(field("@default", 64), field("CALL1", 32), []byte("qubes.Filecopy+x\x00"))
	if typ != MsgTriggerService3 || !cmp.Equal(want3, b) {
		t.Errorf("v3: %s %q, want TRIGGER_SERVICE3 %q", typ, b, want3)
	}
	p.Source = "sys-net"
	if _, _, err := p.Encode(3); err == nil {
		t.Error("v3 accepted a source domain")
	}
	typ, b, err = p.Encode(4)
	if err != nil {
		t.Fatal(err)
	}
	want4 := cat(field("sys-net", 64), field("@default", 64), field("CALL1", 32), []byte("qubes.Filecopy+x\x00"))
	if typ != MsgTriggerService4 || !cmp.Equal(want4, b) {
		t.Errorf("v4: %s %q, want TRIGGER_SERVICE4 %q", typ, b, want4)
	}
	for _, bad := range []TriggerParams{
		{Target: "", Ident: "a", Service: "s"},
		{Target: strings.Repeat("t", 64), Ident: "a", Service: "s"},
		{Target: "t t", Ident: "a", Service: "s"},
		{Target: "t", Ident: "", Service: "s"},
		{Target: "t", Ident: "a", Service: "+s"},
		{Target: "t", Ident: "a", Service: "a/b"},
		{Target: "t", Ident: "a", Service: ""},
	} {
		if _, _, err := bad.Encode(4); err == nil {
			t.Errorf("Encode(%+v) succeeded", bad)
		}
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in      string
		want    Command
		wantErr string
	}{
		{"user:QUBESRPC qubes.Foo dom0", Command{User: "user", Command: "QUBESRPC qubes.Foo dom0", IsRPC: true, Service: "qubes.Foo", Source: "dom0"}, ""},
		{"DEFAULT:QUBESRPC qubes.USB+2-1 sys-usb", Command{User: "DEFAULT", Command: "QUBESRPC qubes.USB+2-1 sys-usb", IsRPC: true, Service: "qubes.USB", Arg: "2-1", Source: "sys-usb"}, ""},
		{"root:nogui:QUBESRPC qubes.Foo+ dom0 name dom0", Command{User: "root", NoGUI: true, Command: "QUBESRPC qubes.Foo+ dom0 name dom0", IsRPC: true, Service: "qubes.Foo", Source: "dom0"}, ""},
		{"user:echo hi:there", Command{User: "user", Command: "echo hi:there"}, ""},
		{"user:", Command{User: "user"}, ""},
		{"user:QUBESRPCX", Command{}, "not followed by a space"},
		{"user:QUBESRPC qubes.Foo", Command{}, "no source domain"},
		{"user:QUBESRPC  dom0", Command{}, "empty service descriptor"},
		{"user:QUBESRPC +arg dom0", Command{}, "empty service name"},
		{"user:QUBESRPC qubes.Foo ", Command{}, "empty source domain"},
		{"user:QUBESRPC " + strings.Repeat("a", 256) + " dom0", Command{}, "256 bytes, limit is 255"},
		{"no colon", Command{}, "no \"user:\" part"},
		{"user:QUBESRPC qubes.Foo bad+source", Command{}, "forbidden byte 0x2b"},
	}
	for _, tt := range tests {
		got, err := ParseCommand(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCommand(%.40q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", tt.in, err)
			continue
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("ParseCommand(%q) (-want +got):\n%s", tt.in, d)
		}
	}
}

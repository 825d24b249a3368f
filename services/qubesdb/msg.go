// Package qubesdb speaks the QubesDB protocol between a VM and dom0 over a
// byte stream (in production the vchan on port 111, dom0 the server).
//
// The VM side (Client) mirrors dom0's database: it sends one MULTIREAD with
// an empty path, stores every entry dom0 sends back, then keeps the copy in
// sync with the WRITE and RM messages dom0 pushes afterwards. Reads, lists
// and multireads are answered from that copy, because dom0's daemon accepts
// only WRITE, RM, the first MULTIREAD and responses on the inter-VM link
// (qubes-core-qubesdb daemon/db-cmds.c, verify_hdr) and drops the link on
// anything else. Writes and removals go to dom0 and wait for its answer.
//
// The dom0 side (Server) holds the authoritative database, answers the VM's
// requests and pushes its own changes; it is used by host tests and in the
// Xen lab.
//
// Everything the peer sends is validated: a misbehaving peer gets the
// connection closed with an error saying what it did, never a panic or
// unbounded memory use, and a peer that stops reading our answers is cut
// off rather than waited for.
package qubesdb

import (
	"encoding/binary"
	"fmt"
)

// MsgType is the type byte of a QubesDB message (enum qdb_msg in
// qubes-core-qubesdb include/qubesdb.h).
type MsgType uint8

// Message types. READ, LIST, WATCH and UNWATCH are only valid on the local
// socket inside a domain; they are defined so the codec knows them.
const (
	CmdRead        MsgType = 0
	CmdWrite       MsgType = 1
	CmdMultiread   MsgType = 2
	CmdList        MsgType = 3
	CmdRm          MsgType = 4
	CmdWatch       MsgType = 5
	CmdUnwatch     MsgType = 6
	RespOK         MsgType = 7
	RespErrorNoEnt MsgType = 8
	RespError      MsgType = 9
	RespRead       MsgType = 10
	RespMultiread  MsgType = 11
	RespList       MsgType = 12
	RespWatch      MsgType = 13
	maxMsgType             = RespWatch
)

var msgTypeNames = [...]string{
	CmdRead: "READ", CmdWrite: "WRITE", CmdMultiread: "MULTIREAD", CmdList: "LIST",
	CmdRm: "RM", CmdWatch: "WATCH", CmdUnwatch: "UNWATCH", RespOK: "RESP_OK",
	RespErrorNoEnt: "RESP_ERROR_NOENT", RespError: "RESP_ERROR", RespRead: "RESP_READ",
	RespMultiread: "RESP_MULTIREAD", RespList: "RESP_LIST", RespWatch: "RESP_WATCH",
}

func (t MsgType) String() string {
	if t <= maxMsgType {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Wire layout of struct qdb_hdr: the C struct is naturally aligned, so three
// padding bytes sit between the 64-byte path and the little-endian data_len.
const (
	HeaderSize    = 72 // sizeof(struct qdb_hdr)
	TypeOffset    = 0  // uint8_t type
	PathOffset    = 1  // char path[64]
	PathSize      = 64 // QDB_MAX_PATH, including the terminating NUL
	PadOffset     = 65 // 3 bytes of alignment padding
	DataLenOffset = 68 // uint32_t data_len, little-endian
	// MaxData is QDB_MAX_DATA. dom0's daemon rejects a header whose data_len
	// is >= MaxData (verify_hdr), so the largest value that crosses the link
	// is MaxData-1 bytes; this package enforces the same bound both ways.
	MaxData = 3072
	// MaxPathLen is the longest path string: the NUL must fit in PathSize.
	MaxPathLen = PathSize - 1
)

// Header is one decoded struct qdb_hdr. Path is the string before the NUL.
type Header struct {
	Type    MsgType
	Path    string
	DataLen uint32
}

// MarshalBinary encodes h as the 72-byte wire header. It refuses a path
// that does not fit with its NUL or has characters QubesDB forbids, and a
// data length of MaxData or more, so nothing invalid is ever sent.
func (h Header) MarshalBinary() ([]byte, error) {
	var b [HeaderSize]byte
	if err := h.put(b[:]); err != nil {
		return nil, err
	}
	return b[:], nil
}

func (h Header) put(b []byte) error {
	if h.Path != "" {
		if err := CheckPath(h.Path); err != nil {
			return err
		}
	}
	if h.DataLen >= MaxData {
		return fmt.Errorf("qubesdb: data length %d for %q is over the limit of %d bytes; shorten the value", h.DataLen, h.Path, MaxData-1)
	}
	b[TypeOffset] = byte(h.Type)
	copy(b[PathOffset:PathOffset+PathSize], h.Path)
	binary.LittleEndian.PutUint32(b[DataLenOffset:], h.DataLen)
	return nil
}

// UnmarshalBinary decodes and validates a header received from the peer:
// the type must be a known one, the path must be NUL-terminated inside its
// 64 bytes, use only QubesDB's path characters (or be empty), and data_len
// must be below MaxData. Bytes after the NUL and the padding are ignored, as
// the C daemon ignores them.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) != HeaderSize {
		return fmt.Errorf("qubesdb: header is %d bytes, want %d", len(b), HeaderSize)
	}
	t := MsgType(b[TypeOffset])
	if t > maxMsgType {
		return fmt.Errorf("qubesdb: unknown message type %d from peer", uint8(t))
	}
	raw := b[PathOffset : PathOffset+PathSize]
	n := indexNUL(raw)
	if n < 0 {
		return fmt.Errorf("qubesdb: %s path is not NUL-terminated within %d bytes", t, PathSize)
	}
	path := string(raw[:n])
	if path != "" {
		if err := CheckPath(path); err != nil {
			return err
		}
	}
	dl := binary.LittleEndian.Uint32(b[DataLenOffset:])
	if dl >= MaxData {
		return fmt.Errorf("qubesdb: %s %q announces %d data bytes, limit is %d", t, path, dl, MaxData-1)
	}
	*h = Header{Type: t, Path: path, DataLen: dl}
	return nil
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// CheckPath reports whether p is a syntactically valid QubesDB path: 1 to
// 63 characters from [A-Za-z0-9_/.:@-], not starting with '-' (the daemon's
// verify_path). Whether it must start or may end with '/' depends on the
// command and is checked by the callers.
func CheckPath(p string) error {
	if p == "" {
		return fmt.Errorf("qubesdb: empty path")
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("qubesdb: path %.20q... is %d bytes, limit is %d", p, len(p), MaxPathLen)
	}
	if p[0] == '-' {
		return fmt.Errorf("qubesdb: path %q starts with '-'", p)
	}
	for i := 0; i < len(p); i++ {
		if !pathChar(p[i]) {
			return fmt.Errorf("qubesdb: path %q has forbidden byte 0x%02x at %d", p, p[i], i)
		}
	}
	return nil
}

func pathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '_', '/', '.', ':', '@', '-':
		return true
	}
	return false
}

// CheckKey reports whether p names a single database entry: a valid path
// that starts with '/' and does not end with '/' (qubesdb_insert's rules).
func CheckKey(p string) error {
	if err := CheckPath(p); err != nil {
		return err
	}
	if p[0] != '/' {
		return fmt.Errorf("qubesdb: key %q does not start with '/'", p)
	}
	if p[len(p)-1] == '/' {
		return fmt.Errorf("qubesdb: key %q ends with '/'", p)
	}
	return nil
}

// checkRmPath reports whether p may be removed: a key, or a directory
// prefix ending in '/' which removes every entry under it.
func checkRmPath(p string) error {
	if err := CheckPath(p); err != nil {
		return err
	}
	if p[0] != '/' {
		return fmt.Errorf("qubesdb: path %q does not start with '/'", p)
	}
	return nil
}

// CheckValue reports whether v may be stored: shorter than MaxData and
// free of NUL bytes (the daemon's verify_data).
func CheckValue(v []byte) error {
	if len(v) >= MaxData {
		return fmt.Errorf("qubesdb: value is %d bytes, limit is %d", len(v), MaxData-1)
	}
	if i := indexNUL(v); i >= 0 {
		return fmt.Errorf("qubesdb: value has a NUL byte at offset %d", i)
	}
	return nil
}

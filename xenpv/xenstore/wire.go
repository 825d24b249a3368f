package xenstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MsgType is the type field of an xsd_sockmsg (enum xsd_sockmsg_type in
// xs_wire.h). A reply carries the type of its request, or TypeError.
type MsgType uint32

// Message types. The numbering is the C enum's; 20 (XS_RESTRICT) was
// removed from Xen and must not be reused.
const (
	TypeControl            MsgType = 0 // formerly XS_DEBUG
	TypeDirectory          MsgType = 1
	TypeRead               MsgType = 2
	TypeGetPerms           MsgType = 3
	TypeWatch              MsgType = 4
	TypeUnwatch            MsgType = 5
	TypeTransactionStart   MsgType = 6
	TypeTransactionEnd     MsgType = 7
	TypeIntroduce          MsgType = 8
	TypeRelease            MsgType = 9
	TypeGetDomainPath      MsgType = 10
	TypeWrite              MsgType = 11
	TypeMkdir              MsgType = 12
	TypeRm                 MsgType = 13
	TypeSetPerms           MsgType = 14
	TypeWatchEvent         MsgType = 15
	TypeError              MsgType = 16
	TypeIsDomainIntroduced MsgType = 17
	TypeResume             MsgType = 18
	TypeSetTarget          MsgType = 19
	TypeResetWatches       MsgType = 21
	TypeDirectoryPart      MsgType = 22
	TypeGetFeature         MsgType = 23
	TypeSetFeature         MsgType = 24
	TypeGetQuota           MsgType = 25
	TypeSetQuota           MsgType = 26

	// TypeInvalid is guaranteed by Xen never to be a valid type.
	TypeInvalid MsgType = 0xffff
)

var typeNames = [...]string{
	TypeControl:            "CONTROL",
	TypeDirectory:          "DIRECTORY",
	TypeRead:               "READ",
	TypeGetPerms:           "GET_PERMS",
	TypeWatch:              "WATCH",
	TypeUnwatch:            "UNWATCH",
	TypeTransactionStart:   "TRANSACTION_START",
	TypeTransactionEnd:     "TRANSACTION_END",
	TypeIntroduce:          "INTRODUCE",
	TypeRelease:            "RELEASE",
	TypeGetDomainPath:      "GET_DOMAIN_PATH",
	TypeWrite:              "WRITE",
	TypeMkdir:              "MKDIR",
	TypeRm:                 "RM",
	TypeSetPerms:           "SET_PERMS",
	TypeWatchEvent:         "WATCH_EVENT",
	TypeError:              "ERROR",
	TypeIsDomainIntroduced: "IS_DOMAIN_INTRODUCED",
	TypeResume:             "RESUME",
	TypeSetTarget:          "SET_TARGET",
	TypeResetWatches:       "RESET_WATCHES",
	TypeDirectoryPart:      "DIRECTORY_PART",
	TypeGetFeature:         "GET_FEATURE",
	TypeSetFeature:         "SET_FEATURE",
	TypeGetQuota:           "GET_QUOTA",
	TypeSetQuota:           "SET_QUOTA",
}

// Valid reports whether t is a message type Xen defines.
func (t MsgType) Valid() bool {
	return t < MsgType(len(typeNames)) && typeNames[t] != ""
}

func (t MsgType) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	if t == TypeInvalid {
		return "INVALID"
	}
	return fmt.Sprintf("MsgType(%d)", uint32(t))
}

// Protocol limits from xs_wire.h.
const (
	// PayloadMax bounds a message's payload in both directions
	// (XENSTORE_PAYLOAD_MAX). xenstored kills a connection that exceeds
	// it, which a domain cannot recover from, so the client refuses to
	// send more rather than relying on the server.
	PayloadMax = 4096
	// AbsPathMax and RelPathMax bound absolute and relative paths
	// (XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX).
	AbsPathMax = 3072
	RelPathMax = 2048
)

// Header is struct xsd_sockmsg: four little-endian (native x86) u32s.
type Header struct {
	Type  MsgType // XS_*
	ReqID uint32  // echoed by xenstored in the reply; 0 in watch events
	TxID  uint32  // transaction id, 0 outside transactions
	Len   uint32  // payload bytes following the header
}

// Layout of struct xsd_sockmsg.
const (
	HeaderSize     = 16
	headerTypeOff  = 0
	headerReqIDOff = 4
	headerTxIDOff  = 8
	headerLenOff   = 12
)

// Put encodes h into b, which must be at least HeaderSize bytes.
func (h Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	binary.LittleEndian.PutUint32(b[headerTypeOff:], uint32(h.Type))
	binary.LittleEndian.PutUint32(b[headerReqIDOff:], h.ReqID)
	binary.LittleEndian.PutUint32(b[headerTxIDOff:], h.TxID)
	binary.LittleEndian.PutUint32(b[headerLenOff:], h.Len)
}

// ParseHeader decodes a header. It checks only what every message must
// satisfy (a known type, a payload within PayloadMax); whether the type
// fits the direction is the reader's business.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("xenstore: header of %d bytes, want %d: %w", len(b), HeaderSize, ErrProtocol)
	}
	h := Header{
		Type:  MsgType(binary.LittleEndian.Uint32(b[headerTypeOff:])),
		ReqID: binary.LittleEndian.Uint32(b[headerReqIDOff:]),
		TxID:  binary.LittleEndian.Uint32(b[headerTxIDOff:]),
		Len:   binary.LittleEndian.Uint32(b[headerLenOff:]),
	}
	if !h.Type.Valid() {
		return h, fmt.Errorf("xenstore: message of unknown type %d: %w", uint32(h.Type), ErrProtocol)
	}
	if h.Len > PayloadMax {
		return h, fmt.Errorf("xenstore: %v message with %d-byte payload, limit %d: %w", h.Type, h.Len, PayloadMax, ErrProtocol)
	}
	return h, nil
}

// Message is one header and its payload.
type Message struct {
	Header
	Payload []byte
}

// MarshalMessage encodes a message of type t with the given payload parts
// concatenated. It sets Len itself and refuses payloads over PayloadMax.
func MarshalMessage(t MsgType, reqID, txID uint32, payload []byte) ([]byte, error) {
	if len(payload) > PayloadMax {
		return nil, &Error{Name: "E2BIG", Msg: fmt.Sprintf("%v payload of %d bytes exceeds %d", t, len(payload), PayloadMax)}
	}
	b := make([]byte, HeaderSize+len(payload))
	Header{Type: t, ReqID: reqID, TxID: txID, Len: uint32(len(payload))}.Put(b)
	copy(b[HeaderSize:], payload)
	return b, nil
}

// ReadMessage reads one message from r. The payload is allocated only
// after the header has been checked, so at most PayloadMax bytes are
// committed per message whatever the peer claims.
func ReadMessage(r io.Reader) (Message, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return Message{}, err
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return Message{Header: h}, err
	}
	m := Message{Header: h, Payload: make([]byte, h.Len)}
	if _, err := io.ReadFull(r, m.Payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return m, err
	}
	return m, nil
}

// ErrProtocol reports that the peer broke the xenstore protocol: a bad
// header, a malformed payload, a reply nobody asked for, impossible ring
// indices. The connection cannot be trusted afterwards.
var ErrProtocol = errors.New("xenstore protocol violation")

// ErrClosed is returned by operations on a closed client or ring.
var ErrClosed = errors.New("xenstore: connection closed")

// joinStrings builds a payload of NUL-terminated strings.
func joinStrings(ss ...string) []byte {
	n := 0
	for _, s := range ss {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for _, s := range ss {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

// splitStrings splits a payload that must be zero or more NUL-terminated
// strings (the <foo>|* of xenstore.txt). A payload not ending in NUL is
// malformed.
func splitStrings(p []byte) ([]string, error) {
	if len(p) == 0 {
		return nil, nil
	}
	if p[len(p)-1] != 0 {
		return nil, fmt.Errorf("xenstore: string list not NUL-terminated: %w", ErrProtocol)
	}
	var out []string
	for len(p) > 0 {
		i := 0
		for p[i] != 0 {
			i++
		}
		out = append(out, string(p[:i]))
		p = p[i+1:]
	}
	return out, nil
}

// singleString parses a payload that must be exactly one NUL-terminated
// string (READ replies are raw bytes and do not use it). Some servers
// omit the terminator on short acks; it is accepted but nothing may
// follow the first NUL.
func singleString(p []byte) (string, error) {
	for i, c := range p {
		if c == 0 {
			if i != len(p)-1 {
				return "", fmt.Errorf("xenstore: %d unexpected bytes after string: %w", len(p)-1-i, ErrProtocol)
			}
			return string(p[:i]), nil
		}
	}
	return string(p), nil
}

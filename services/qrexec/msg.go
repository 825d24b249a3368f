// Package qrexec is the VM side of Qubes' qrexec protocol: the agent that
// dom0's qrexec-daemon talks to on vchan port 512, which runs RPC services
// (qubes.Foo+arg) implemented as Go handlers and lets the VM call services
// elsewhere.
//
// The control connection carries requests; every request's data (stdin,
// stdout, stderr, exit code) runs on its own connection to the
// domain:port the request names. The package is transport-neutral: the
// control stream is an io.ReadWriteCloser and data connections come from a
// Dialer, which production code implements with vchan.
//
// Daemon is the dom0 end of the same conversation, for host tests and
// the Xen lab where no Qubes dom0 exists.
//
// Protocol facts follow qubes-core-qrexec (libqrexec/qrexec.h, the agent
// and daemon); every message from the peer is validated before use.
package qrexec

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// MsgType is the type field of a qrexec message header.
type MsgType uint32

// Control messages (daemon <-> agent) and data messages (per request).
const (
	MsgExecCmdline          MsgType = 0x200 // dom0 -> agent: run, stdio over the data connection
	MsgJustExec             MsgType = 0x201 // dom0 -> agent: run detached, only an exit code
	MsgServiceConnect       MsgType = 0x202 // dom0 -> agent: a call we triggered was allowed
	MsgServiceRefused       MsgType = 0x203 // dom0 -> agent: a call we triggered was refused
	MsgTriggerService       MsgType = 0x210 // agent -> dom0: call a service (protocol 2, unused here)
	MsgConnectionTerminated MsgType = 0x211 // agent -> dom0: a data connection's port is free
	MsgTriggerService3      MsgType = 0x212 // agent -> dom0: call a service (protocol 3)
	MsgTriggerService4      MsgType = 0x213 // agent -> dom0: call a service (protocol 4)
	MsgHello                MsgType = 0x300 // both: peer_info, first message on every connection

	MsgDataStdin    MsgType = 0x190
	MsgDataStdout   MsgType = 0x191
	MsgDataStderr   MsgType = 0x192
	MsgDataExitCode MsgType = 0x193
)

var msgTypeNames = map[MsgType]string{
	MsgExecCmdline: "EXEC_CMDLINE", MsgJustExec: "JUST_EXEC", MsgServiceConnect: "SERVICE_CONNECT",
	MsgServiceRefused: "SERVICE_REFUSED", MsgTriggerService: "TRIGGER_SERVICE",
	MsgConnectionTerminated: "CONNECTION_TERMINATED", MsgTriggerService3: "TRIGGER_SERVICE3",
	MsgTriggerService4: "TRIGGER_SERVICE4", MsgHello: "HELLO", MsgDataStdin: "DATA_STDIN",
	MsgDataStdout: "DATA_STDOUT", MsgDataStderr: "DATA_STDERR", MsgDataExitCode: "DATA_EXIT_CODE",
}

func (t MsgType) String() string {
	if s, ok := msgTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("MsgType(%#x)", uint32(t))
}

// Protocol versions exchanged in HELLO. Version 3 (Qubes 4.1, 4.2) raised
// the data chunk limit to 64 KiB and added TRIGGER_SERVICE3; version 4
// (Qubes 4.3) adds TRIGGER_SERVICE4, which carries a source domain. Data
// streams and exec_params are the same in 3 and 4. Version 2 (Qubes 4.0,
// 4 KiB chunks) is end-of-life and refused.
const (
	ProtocolV3 = 3
	ProtocolV4 = 4
	// Version is what this agent announces; each connection uses the
	// smaller of it and the peer's version.
	Version = ProtocolV4
	// MinVersion is the oldest peer version accepted.
	MinVersion = ProtocolV3
)

// Sizes of the wire structures (all fields little-endian uint32 or char).
const (
	HeaderSize          = 8  // struct msg_header {u32 type; u32 len}
	PeerInfoSize        = 4  // struct peer_info {u32 version}
	ExecParamsSize      = 8  // struct exec_params {u32 connect_domain; u32 connect_port; char cmdline[]}
	ServiceParamsSize   = 32 // struct service_params {char ident[32]}
	DomainNameSize      = 64 // target_domain / source_domain fields of trigger params
	TriggerParams3Size  = DomainNameSize + ServiceParamsSize
	TriggerParams4Size  = 2*DomainNameSize + ServiceParamsSize
	ExitCodeSize        = 4 // DATA_EXIT_CODE carries an int
	MaxDataChunk        = 65536
	MaxServiceNameLen   = 65000 // MAX_SERVICE_NAME_LEN, without the NUL
	MaxCmdlineLen       = 65535 // MAX_QREXEC_CMD_LEN, without the NUL
	maxServiceNameChars = 255   // NAME_MAX: the service name part must be a file name in Linux
)

// Exit codes the agent reports for requests it could not run.
const (
	ExitServiceNotFound = 127 // QREXEC_EXIT_SERVICE_NOT_FOUND
	ExitRequestRefused  = 126 // QREXEC_EXIT_REQUEST_REFUSED
	ExitProblem         = 125 // QREXEC_EXIT_PROBLEM
)

// MaxChunk returns the largest data message payload for a protocol
// version (MAX_DATA_CHUNK_V3 for 3 and later).
func MaxChunk(version uint32) int {
	if version >= ProtocolV3 {
		return MaxDataChunk
	}
	return 4096
}

// Header is struct msg_header.
type Header struct {
	Type MsgType
	Len  uint32
}

// MarshalBinary encodes the 8-byte header.
func (h Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderSize)
	h.put(b)
	return b, nil
}

func (h Header) put(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], uint32(h.Type))
	binary.LittleEndian.PutUint32(b[4:], h.Len)
}

// UnmarshalBinary decodes an 8-byte header. Whether type and length are
// acceptable depends on the connection and is checked by the readers.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) != HeaderSize {
		return fmt.Errorf("qrexec: header is %d bytes, want %d", len(b), HeaderSize)
	}
	h.Type = MsgType(binary.LittleEndian.Uint32(b[0:]))
	h.Len = binary.LittleEndian.Uint32(b[4:])
	return nil
}

// DecodePeerInfo decodes a HELLO payload and negotiates: the result is the
// smaller of Version and the peer's version, which must be >= MinVersion.
func DecodePeerInfo(b []byte) (peer, use uint32, err error) {
	if len(b) != PeerInfoSize {
		return 0, 0, fmt.Errorf("qrexec: HELLO payload is %d bytes, want %d", len(b), PeerInfoSize)
	}
	peer = binary.LittleEndian.Uint32(b)
	use = min(peer, Version)
	if use < MinVersion {
		return peer, 0, fmt.Errorf("qrexec: peer speaks protocol %d, this agent needs %d to %d", peer, MinVersion, Version)
	}
	return peer, use, nil
}

func encodePeerInfo(version uint32) []byte {
	return binary.LittleEndian.AppendUint32(nil, version)
}

// ExecParams is struct exec_params: where the data connection goes and,
// for EXEC_CMDLINE and JUST_EXEC, the "user:command" to run. For
// SERVICE_CONNECT the cmdline field holds the request ident.
type ExecParams struct {
	Domain  uint32
	Port    uint32
	Cmdline string
}

// MarshalBinary encodes the params with the NUL-terminated cmdline.
func (p ExecParams) MarshalBinary() ([]byte, error) {
	b := append(p.target(), p.Cmdline...)
	return append(b, 0), nil
}

// target encodes the fixed part of exec_params alone (domain and port),
// the payload of CONNECTION_TERMINATED.
func (p ExecParams) target() []byte {
	b := make([]byte, ExecParamsSize)
	binary.LittleEndian.PutUint32(b[0:], p.Domain)
	binary.LittleEndian.PutUint32(b[4:], p.Port)
	return b
}

// decodeTarget reads domain and port from the first ExecParamsSize bytes.
func decodeTarget(b []byte) (domain, port uint32) {
	return binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint32(b[4:])
}

// UnmarshalBinary decodes exec_params as received with EXEC_CMDLINE,
// JUST_EXEC or SERVICE_CONNECT. The cmdline field must hold a string of at
// most MaxCmdlineLen bytes terminated by a NUL, and only NULs may follow
// that terminator (SERVICE_CONNECT pads its ident to 32 bytes).
func (p *ExecParams) UnmarshalBinary(b []byte) error {
	if len(b) <= ExecParamsSize {
		return fmt.Errorf("qrexec: exec_params is %d bytes, want more than %d", len(b), ExecParamsSize)
	}
	s, err := cString(b[ExecParamsSize:], MaxCmdlineLen, "command line")
	if err != nil {
		return err
	}
	p.Domain, p.Port = decodeTarget(b)
	p.Cmdline = s
	return nil
}

// cString decodes a NUL-terminated field of which only NULs may follow
// the terminator.
func cString(b []byte, maxLen int, what string) (string, error) {
	n := -1
	for i, c := range b {
		if c == 0 {
			n = i
			break
		}
	}
	if n < 0 {
		return "", fmt.Errorf("qrexec: %s is not NUL-terminated", what)
	}
	if n > maxLen {
		return "", fmt.Errorf("qrexec: %s is %d bytes, limit is %d", what, n, maxLen)
	}
	for i := n + 1; i < len(b); i++ {
		if b[i] != 0 {
			return "", fmt.Errorf("qrexec: %s has byte 0x%02x at %d after its NUL terminator", what, b[i], i)
		}
	}
	return string(b[:n]), nil
}

// checkIdent validates a request ident (struct service_params) with the
// characters qrexec-daemon's validate_request_id allows.
func checkIdent(s string) error {
	if len(s) == 0 || len(s) >= ServiceParamsSize {
		return fmt.Errorf("qrexec: request ident %q must be 1 to %d bytes", s, ServiceParamsSize-1)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !alnum(c) && c != '_' && c != '-' && c != '.' && c != ' ' {
			return fmt.Errorf("qrexec: request ident %q has forbidden byte 0x%02x", s, c)
		}
	}
	return nil
}

// DecodeServiceParams decodes struct service_params (SERVICE_REFUSED).
func DecodeServiceParams(b []byte) (string, error) {
	if len(b) != ServiceParamsSize {
		return "", fmt.Errorf("qrexec: service_params is %d bytes, want %d", len(b), ServiceParamsSize)
	}
	s, err := cString(b, ServiceParamsSize-1, "request ident")
	if err != nil {
		return "", err
	}
	return s, checkIdent(s)
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// CheckServiceName validates a service descriptor ("qubes.Foo" or
// "qubes.Foo+arg") the way qrexec-daemon does before evaluating policy:
// not empty, not starting with '+', only [A-Za-z0-9_.-+]. The daemon
// would silently turn other characters into '_'; refusing is clearer.
func CheckServiceName(s string) error {
	if s == "" || s[0] == '+' {
		return fmt.Errorf("qrexec: service name %q is empty or starts with '+'", s)
	}
	if len(s) > MaxServiceNameLen {
		return fmt.Errorf("qrexec: service name is %d bytes, limit is %d", len(s), MaxServiceNameLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '_' && c != '-' && c != '.' && c != '+' {
			return fmt.Errorf("qrexec: service name %q has forbidden byte 0x%02x", s, c)
		}
	}
	return nil
}

// CheckDomainName validates a target or source domain for a trigger
// message: 1 to 63 bytes of [A-Za-z0-9_.-@:] (so "@default" and
// "@dispvm:name" keywords pass).
func CheckDomainName(s string) error {
	if s == "" || len(s) >= DomainNameSize {
		return fmt.Errorf("qrexec: domain name %q must be 1 to %d bytes", s, DomainNameSize-1)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '_' && c != '-' && c != '.' && c != '@' && c != ':' {
			return fmt.Errorf("qrexec: domain name %q has forbidden byte 0x%02x", s, c)
		}
	}
	return nil
}

// TriggerParams is a VM's request to call a service: struct
// trigger_service_params3 (Source empty) or trigger_service_params4.
type TriggerParams struct {
	Source  string // protocol 4 only; empty means the calling VM
	Target  string
	Ident   string
	Service string
}

// Encode builds the TRIGGER_SERVICE3 or TRIGGER_SERVICE4 payload for the
// negotiated version and returns the message type to send it with.
func (p TriggerParams) Encode(version uint32) (MsgType, []byte, error) {
	if err := CheckDomainName(p.Target); err != nil {
		return 0, nil, err
	}
	if err := checkIdent(p.Ident); err != nil {
		return 0, nil, err
	}
	if err := CheckServiceName(p.Service); err != nil {
		return 0, nil, err
	}
	t, fixed := MsgTriggerService3, TriggerParams3Size
	if version >= ProtocolV4 {
		t, fixed = MsgTriggerService4, TriggerParams4Size
		if p.Source != "" {
			if err := CheckDomainName(p.Source); err != nil {
				return 0, nil, err
			}
		}
	} else if p.Source != "" {
		return 0, nil, fmt.Errorf("qrexec: a source domain needs protocol 4, dom0 speaks %d", version)
	}
	b := make([]byte, fixed+len(p.Service)+1)
	off := 0
	if t == MsgTriggerService4 {
		copy(b[off:off+DomainNameSize], p.Source)
		off += DomainNameSize
	}
	copy(b[off:off+DomainNameSize], p.Target)
	off += DomainNameSize
	copy(b[off:off+ServiceParamsSize], p.Ident)
	off += ServiceParamsSize
	copy(b[off:], p.Service)
	return t, b, nil
}

// DecodeTriggerParams decodes a TRIGGER_SERVICE3 or TRIGGER_SERVICE4
// payload sent by a VM, with qrexec-daemon's checks made strict: domain
// fields NUL-terminated within 64 bytes and valid names (the source may be
// empty), a valid request ident, and a NUL-terminated service name with no
// NUL before its end. Characters the daemon would replace by '_' are
// refused.
func DecodeTriggerParams(t MsgType, b []byte) (TriggerParams, error) {
	fixed := TriggerParams3Size
	switch t {
	case MsgTriggerService3:
	case MsgTriggerService4:
		fixed = TriggerParams4Size
	default:
		return TriggerParams{}, fmt.Errorf("qrexec: %s is not a trigger message", t)
	}
	if len(b) <= fixed || len(b) > fixed+MaxServiceNameLen+1 {
		return TriggerParams{}, fmt.Errorf("qrexec: %s payload is %d bytes, want %d to %d", t, len(b), fixed+1, fixed+MaxServiceNameLen+1)
	}
	var p TriggerParams
	var err error
	off := 0
	if t == MsgTriggerService4 {
		if p.Source, err = domainField(b[:DomainNameSize], "source domain"); err != nil {
			return TriggerParams{}, err
		}
		if p.Source != "" {
			if err := CheckDomainName(p.Source); err != nil {
				return TriggerParams{}, err
			}
		}
		off = DomainNameSize
	}
	if p.Target, err = domainField(b[off:off+DomainNameSize], "target domain"); err != nil {
		return TriggerParams{}, err
	}
	if err := CheckDomainName(p.Target); err != nil {
		return TriggerParams{}, err
	}
	off += DomainNameSize
	if p.Ident, err = DecodeServiceParams(b[off : off+ServiceParamsSize]); err != nil {
		return TriggerParams{}, err
	}
	name := b[off+ServiceParamsSize:]
	if i := bytes.IndexByte(name, 0); i != len(name)-1 {
		return TriggerParams{}, fmt.Errorf("qrexec: service name in %s is not a single NUL-terminated string", t)
	}
	p.Service = string(name[:len(name)-1])
	if err := CheckServiceName(p.Service); err != nil {
		return TriggerParams{}, err
	}
	return p, nil
}

// domainField decodes a 64-byte domain name field. Bytes after the NUL
// are ignored, as the daemon ignores them (senders leave strncpy garbage
// there in principle).
func domainField(b []byte, what string) (string, error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", fmt.Errorf("qrexec: %s is not NUL-terminated within %d bytes", what, len(b))
	}
	return string(b[:i]), nil
}

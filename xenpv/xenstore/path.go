package xenstore

import (
	"fmt"
	"strconv"
	"strings"
)

// DomID is a Xen domain id. xenstore writes it in decimal.
type DomID uint16

// DomIDFirstReserved is the first special domain id (DOMID_FIRST_RESERVED
// in xen.h: DOMID_SELF, DOMID_IO, ...). Real domains are below it.
const DomIDFirstReserved DomID = 0x7ff0

// ParseDomID parses a decimal domain id as xenstore writes it ("0" to
// "65535", no sign, no leading zeros other than "0" itself).
func ParseDomID(s string) (DomID, error) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("xenstore: bad domain id %q", truncate(s))
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("xenstore: bad domain id %q", truncate(s))
	}
	return DomID(n), nil
}

// HomePath returns a domain's home directory, /local/domain/<domid>, the
// base of its relative paths.
func HomePath(d DomID) string {
	return "/local/domain/" + strconv.FormatUint(uint64(d), 10)
}

// ResolvePath returns p as xenstored sees it when domain d sends it:
// absolute paths and special watch paths (@...) unchanged, relative ones
// below HomePath(d). Useful to compare watch event paths, which come back
// relative when the watch was registered relative.
func ResolvePath(d DomID, p string) string {
	if p == "" || p[0] == '/' || p[0] == '@' {
		return p
	}
	return HomePath(d) + "/" + p
}

// validPathChar reports whether c may appear in a path: ASCII
// alphanumerics and -/_@ (docs/misc/xenstore.txt).
func validPathChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '/' || c == '_' || c == '@'
}

// ValidatePath checks p against xenstored's rules: not empty; only
// alphanumerics and -/_@; no doubled slash; no trailing slash except the
// root "/"; at most AbsPathMax bytes if absolute, RelPathMax if relative
// (the home prefix xenstored adds must still fit). Special watch paths
// (@introduceDomain, @releaseDomain) pass: '@' is a permitted character.
// Failures are *Error with Name "EINVAL", as xenstored would answer.
func ValidatePath(p string) error {
	if p == "" {
		return errLocal("EINVAL", "empty path")
	}
	max := RelPathMax
	if p[0] == '/' {
		max = AbsPathMax
	}
	if len(p) > max {
		return errLocal("EINVAL", "path of %d bytes exceeds %d", len(p), max)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !validPathChar(c) {
			return errLocal("EINVAL", "path %q: byte %#02x not allowed", truncate(p), c)
		}
		if c == '/' && i > 0 && p[i-1] == '/' {
			return errLocal("EINVAL", "path %q: doubled slash", truncate(p))
		}
	}
	if len(p) > 1 && p[len(p)-1] == '/' {
		return errLocal("EINVAL", "path %q: trailing slash", truncate(p))
	}
	return nil
}

// validateName checks one path element, as DIRECTORY returns them.
func validateName(n string) error {
	if n == "" {
		return fmt.Errorf("xenstore: empty directory entry: %w", ErrProtocol)
	}
	if len(n) > AbsPathMax {
		return fmt.Errorf("xenstore: directory entry of %d bytes: %w", len(n), ErrProtocol)
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c == '/' || !validPathChar(c) {
			return fmt.Errorf("xenstore: directory entry %q: byte %#02x not allowed: %w", truncate(n), c, ErrProtocol)
		}
	}
	return nil
}

// Join joins path elements with single slashes: Join("device/vif", "0",
// "state") is "device/vif/0/state". Empty elements are skipped; the
// result is not validated.
func Join(elem ...string) string {
	var b strings.Builder
	for _, e := range elem {
		if e == "" {
			continue
		}
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "/") {
			b.WriteByte('/')
		}
		if b.Len() > 0 {
			e = strings.TrimLeft(e, "/")
		}
		b.WriteString(e)
	}
	return b.String()
}

// Access is what a permission entry allows.
type Access byte

// Permission letters (xenstore.txt, GET_PERMS).
const (
	AccessNone      Access = 'n'
	AccessRead      Access = 'r'
	AccessWrite     Access = 'w'
	AccessReadWrite Access = 'b'
)

// Perm is one permission entry. A node's first entry names its owner
// (which may always read and write) and the access of every domain not
// listed; later entries grant listed domains their access.
type Perm struct {
	Dom    DomID
	Access Access
}

func (p Perm) String() string {
	return string(rune(p.Access)) + strconv.FormatUint(uint64(p.Dom), 10)
}

// ParsePerm parses "r5" and the like.
func ParsePerm(s string) (Perm, error) {
	if len(s) < 2 {
		return Perm{}, fmt.Errorf("xenstore: bad permission %q", truncate(s))
	}
	a := Access(s[0])
	switch a {
	case AccessNone, AccessRead, AccessWrite, AccessReadWrite:
	default:
		return Perm{}, fmt.Errorf("xenstore: bad permission %q", truncate(s))
	}
	d, err := ParseDomID(s[1:])
	if err != nil {
		return Perm{}, fmt.Errorf("xenstore: bad permission %q", truncate(s))
	}
	return Perm{Dom: d, Access: a}, nil
}

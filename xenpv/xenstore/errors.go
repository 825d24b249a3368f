package xenstore

import (
	"fmt"
	"strings"
	"syscall"
)

// Error is an error reply from xenstored (an ERROR message), or a local
// refusal phrased the same way (a path or payload that xenstored would
// reject). xenstored sends the errno's name, not its number: "ENOENT".
// oxenstored may append detail ("EINVAL: could not convert ..."), kept in
// Msg.
//
// errors.Is(err, syscall.ENOENT) and errors.Is(err, fs.ErrNotExist) work,
// as do the other names in errnoNames.
type Error struct {
	Name string // errno name, e.g. "EAGAIN"
	Msg  string // detail, if any
}

func (e *Error) Error() string {
	if e.Msg != "" && e.Msg != e.Name {
		return "xenstore: " + e.Name + ": " + e.Msg
	}
	return "xenstore: " + e.Name
}

// Errno is the Linux errno the name stands for, or 0 for a name this
// package does not know. EQUOTA, oxenstored's quota error, has no errno of
// its own and maps to EDQUOT.
func (e *Error) Errno() syscall.Errno {
	return errnoNames[e.Name]
}

// Is makes errors.Is match the errno and, through syscall.Errno.Is, the
// portable fs errors (ErrNotExist, ErrExist, ErrPermission).
func (e *Error) Is(target error) bool {
	if t, ok := target.(*Error); ok {
		return t.Name == e.Name
	}
	n := e.Errno()
	if n == 0 {
		return false
	}
	if t, ok := target.(syscall.Errno); ok {
		return t == n
	}
	return n.Is(target)
}

// errnoNames holds the names xs_wire.h's xsd_errors table lists, plus
// EQUOTA (oxenstored) and EPERM (newer xs_wire.h).
var errnoNames = map[string]syscall.Errno{
	"EINVAL":    syscall.EINVAL,
	"EACCES":    syscall.EACCES,
	"EEXIST":    syscall.EEXIST,
	"EISDIR":    syscall.EISDIR,
	"ENOENT":    syscall.ENOENT,
	"ENOMEM":    syscall.ENOMEM,
	"ENOSPC":    syscall.ENOSPC,
	"EIO":       syscall.EIO,
	"ENOTEMPTY": syscall.ENOTEMPTY,
	"ENOSYS":    syscall.ENOSYS,
	"EROFS":     syscall.EROFS,
	"EBUSY":     syscall.EBUSY,
	"EAGAIN":    syscall.EAGAIN,
	"EISCONN":   syscall.EISCONN,
	"E2BIG":     syscall.E2BIG,
	"EPERM":     syscall.EPERM,
	"EQUOTA":    syscall.EDQUOT,
}

// parseError decodes an ERROR payload: "E<name>|", where the name may be
// followed by detail. A payload that does not start with an E-name is a
// protocol violation: the caller would otherwise report garbage as an
// errno.
func parseError(p []byte) error {
	s, err := singleString(p)
	if err != nil {
		return err
	}
	name, detail := s, ""
	if i := strings.IndexAny(s, ": "); i >= 0 {
		name, detail = s[:i], strings.TrimLeft(s[i+1:], ": ")
	}
	if len(name) < 2 || len(name) > 16 || name[0] != 'E' {
		return fmt.Errorf("xenstore: malformed error reply %q: %w", truncate(s), ErrProtocol)
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return fmt.Errorf("xenstore: malformed error reply %q: %w", truncate(s), ErrProtocol)
		}
	}
	if !printable(detail) {
		detail = fmt.Sprintf("%+q", truncate(detail)) // ASCII-only quoting
	}
	return &Error{Name: name, Msg: detail}
}

// truncate shortens untrusted text for error messages.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// errLocal builds an Error for a request refused before it was sent.
func errLocal(name, format string, args ...any) error {
	return &Error{Name: name, Msg: fmt.Sprintf(format, args...)}
}

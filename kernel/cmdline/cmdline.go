// Package cmdline splits a unikgo kernel command line into kernel options,
// environment assignments and the program's arguments:
//
//	[unikgo.OPTION[=VALUE] ...] [NAME=VALUE ...] PROG [ARGS...]
//
// Words are separated by spaces or tabs; double quotes group a word that
// contains spaces (the quotes themselves are removed). The kernel parses the
// line before the Go runtime exists, so Line holds everything in fixed
// arrays and nothing allocates. The command line comes from the boot loader
// (under Xen, from the toolstack's domain config): too many words or bytes
// are cut off and reported by Truncated, never a crash.
package cmdline

import "unsafe"

// Limits of a parsed line.
const (
	MaxBytes = 4096
	MaxWords = 256
)

// OptionPrefix marks a kernel option word.
const OptionPrefix = "unikgo."

type word struct{ off, n uint16 }

// Line is a parsed command line.
type Line struct {
	buf       [MaxBytes]byte
	words     [MaxWords]word
	nw        int
	nOpt      int // words[0:nOpt] are options (prefix stripped)
	nEnv      int // words[nOpt:nOpt+nEnv] are NAME=VALUE
	truncated bool
}

// ParseString parses s.
func (l *Line) ParseString(s string) {
	l.Parse(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// Parse parses b (not retained).
func (l *Line) Parse(b []byte) {
	*l = Line{}
	n := 0 // bytes used in buf
	i := 0
	for i < len(b) {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n') {
			i++
		}
		if i >= len(b) {
			break
		}
		if l.nw == MaxWords {
			l.truncated = true
			break
		}
		start := n
		inQuote, quoted := false, false
		for i < len(b) && (inQuote || (b[i] != ' ' && b[i] != '\t' && b[i] != '\n')) {
			c := b[i]
			i++
			if c == '"' {
				inQuote = !inQuote
				quoted = true
				continue
			}
			if c == 0 {
				continue
			}
			if n == MaxBytes {
				l.truncated = true
				i = len(b)
				break
			}
			l.buf[n] = c
			n++
		}
		if n > start || quoted { // "" is an empty argument
			l.words[l.nw] = word{uint16(start), uint16(n - start)}
			l.nw++
		}
	}
	// Classify: options, then environment, then arguments.
	for l.nOpt < l.nw && hasPrefix(l.raw(l.nOpt), OptionPrefix) {
		w := &l.words[l.nOpt]
		w.off += uint16(len(OptionPrefix))
		w.n -= uint16(len(OptionPrefix))
		l.nOpt++
	}
	for l.nOpt+l.nEnv < l.nw && isAssignment(l.raw(l.nOpt+l.nEnv)) {
		l.nEnv++
	}
}

func (l *Line) raw(i int) []byte {
	w := l.words[i]
	return l.buf[w.off : w.off+w.n]
}

func (l *Line) str(i int) string {
	w := l.words[i]
	if w.n == 0 {
		return ""
	}
	return unsafe.String(&l.buf[w.off], int(w.n))
}

func hasPrefix(b []byte, p string) bool {
	if len(b) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if b[i] != p[i] {
			return false
		}
	}
	return true
}

// isAssignment reports whether w is NAME=VALUE with a shell-style name.
func isAssignment(w []byte) bool {
	for i, c := range w {
		switch {
		case c == '=':
			return i > 0
		case c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return false
}

// Truncated reports whether the line exceeded MaxWords or MaxBytes.
func (l *Line) Truncated() bool { return l.truncated }

// NumOptions, NumEnv and NumArgs count each kind of word.
func (l *Line) NumOptions() int { return l.nOpt }
func (l *Line) NumEnv() int     { return l.nEnv }
func (l *Line) NumArgs() int    { return l.nw - l.nOpt - l.nEnv }

// OptionAt returns option i without its prefix ("verbose", "mem=64M").
func (l *Line) OptionAt(i int) string { return l.str(i) }

// EnvAt returns environment assignment i.
func (l *Line) EnvAt(i int) string { return l.str(l.nOpt + i) }

// ArgAt returns argument i (0 is the program name).
func (l *Line) ArgAt(i int) string { return l.str(l.nOpt + l.nEnv + i) }

// Value returns the value of option name: "" with ok for a bare flag.
func (l *Line) Value(name string) (val string, ok bool) {
	for i := 0; i < l.nOpt; i++ {
		o := l.str(i)
		if o == name {
			return "", true
		}
		if len(o) > len(name) && o[:len(name)] == name && o[len(name)] == '=' {
			return o[len(name)+1:], true
		}
	}
	return "", false
}

// Option reports whether a boolean option is on: present bare, or with a
// value of 1, true, yes or on.
func (l *Line) Option(name string) bool {
	v, ok := l.Value(name)
	if !ok {
		return false
	}
	switch v {
	case "", "1", "true", "yes", "on":
		return true
	}
	return false
}

// HasEnv reports whether the line assigns the environment variable name.
func (l *Line) HasEnv(name string) bool {
	for i := 0; i < l.nEnv; i++ {
		e := l.EnvAt(i)
		if len(e) > len(name) && e[:len(name)] == name && e[len(name)] == '=' {
			return true
		}
	}
	return false
}

// Duration returns option name's value in nanoseconds: a decimal number
// with a unit, ns, us or ms (as in unikgo.timeslice=5ms). ok is false
// when the option is absent; bad is true when it is present but not such
// a duration, or above an hour.
func (l *Line) Duration(name string) (ns uint64, ok, bad bool) {
	v, ok := l.Value(name)
	if !ok {
		return 0, false, false
	}
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		ns = ns*10 + uint64(v[i]-'0')
		i++
		if ns > maxDuration {
			return 0, true, true
		}
	}
	if i == 0 {
		return 0, true, true
	}
	switch v[i:] {
	case "ns":
	case "us":
		ns *= 1_000
	case "ms":
		ns *= 1_000_000
	default:
		return 0, true, true
	}
	if ns > maxDuration {
		return 0, true, true
	}
	return ns, true, false
}

// maxDuration bounds Duration: an hour.
const maxDuration = 3600 * 1_000_000_000

// Package kcmdline writes and reads the unikgo kernel command line:
//
//	[unikgo.OPTION[=V] ...] [NAME=VALUE ...] PROG [ARGS...]
//
// Words starting with "unikgo." are kernel options, then come environment
// assignments, then the program's argv. Words are separated by spaces or
// tabs; double quotes group a word that contains spaces. There is no escape
// character, so a word cannot contain a double quote or a line break.
package kcmdline

import (
	"errors"
	"fmt"
	"github.com/unikgo/unikgo/kernel/cmdline"
	"strings"
)

// OptionPrefix marks a kernel option.
const OptionPrefix = "unikgo."

// Line is a command line split into its three parts.
type Line struct {
	Options []string // each starts with OptionPrefix
	Env     []string // NAME=VALUE
	Args    []string // PROG and its arguments; at least PROG
}

// String renders the line, quoting words that contain blanks. It fails for
// words the kernel could not read back as written.
func (l Line) String() (string, error) {
	if len(l.Args) == 0 {
		return "", errors.New("kernel command line: no program name")
	}
	var words []string
	for _, o := range l.Options {
		if !strings.HasPrefix(o, OptionPrefix) || len(o) == len(OptionPrefix) {
			return "", fmt.Errorf("kernel option %q: must be %sNAME[=VALUE]", o, OptionPrefix)
		}
		words = append(words, o)
	}
	for _, e := range l.Env {
		if !isAssignment(e) {
			return "", fmt.Errorf("environment entry %q: must be NAME=VALUE with NAME made of letters, digits and _", e)
		}
		words = append(words, e)
	}
	if prog := l.Args[0]; prog == "" || isAssignment(prog) || strings.HasPrefix(prog, OptionPrefix) {
		return "", fmt.Errorf("program name %q would be read as an option or an assignment", prog)
	}
	words = append(words, l.Args...)
	var b strings.Builder
	for i, w := range words {
		q, err := Quote(w)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(q)
	}
	return b.String(), nil
}

// Quote returns w as one command-line word: unchanged if it has no blanks,
// else in double quotes.
func Quote(w string) (string, error) {
	if strings.ContainsAny(w, "\"\n\r\x00") {
		return "", fmt.Errorf("command-line word %q: double quotes, line breaks and NUL cannot be passed", w)
	}
	if w == "" || strings.ContainsAny(w, " \t") {
		return `"` + w + `"`, nil
	}
	return w, nil
}

// Split breaks a command line into words the way the kernel does: it is
// the kernel's own parser (kernel/cmdline), so the two cannot disagree.
func Split(s string) ([]string, error) {
	l, err := parse(s)
	if err != nil {
		return nil, err
	}
	return append(append(l.Options, l.Env...), l.Args...), nil
}

// Parse splits s and sorts its words into options, environment and argv,
// as the kernel will.
func Parse(s string) (Line, error) {
	l, err := parse(s)
	if err != nil {
		return Line{}, err
	}
	if len(l.Args) == 0 {
		return Line{}, fmt.Errorf("kernel command line %q: no program name", s)
	}
	return l, nil
}

func parse(s string) (Line, error) {
	if strings.Count(s, `"`)%2 != 0 {
		return Line{}, fmt.Errorf("kernel command line %q: unterminated double quote", s)
	}
	var k cmdline.Line
	k.ParseString(s)
	if k.Truncated() {
		return Line{}, fmt.Errorf("kernel command line of %d bytes: over the kernel's limits (%d words, %d bytes)", len(s), cmdline.MaxWords, cmdline.MaxBytes)
	}
	var l Line
	for i := 0; i < k.NumOptions(); i++ {
		l.Options = append(l.Options, cmdline.OptionPrefix+k.OptionAt(i))
	}
	for i := 0; i < k.NumEnv(); i++ {
		l.Env = append(l.Env, k.EnvAt(i))
	}
	for i := 0; i < k.NumArgs(); i++ {
		l.Args = append(l.Args, k.ArgAt(i))
	}
	return l, nil
}

// isAssignment reports whether w is NAME=VALUE with a shell-style NAME
// (the kernel's rule in kernel/cmdline, applied to a single word).
func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	if !ok || name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

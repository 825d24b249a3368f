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

// Split breaks a command line into words the way the kernel does.
func Split(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
		quoted bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("kernel command line %q: unterminated double quote", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// Parse splits s and sorts its words into options, environment and argv.
func Parse(s string) (Line, error) {
	words, err := Split(s)
	if err != nil {
		return Line{}, err
	}
	var l Line
	i := 0
	for ; i < len(words) && strings.HasPrefix(words[i], OptionPrefix); i++ {
		l.Options = append(l.Options, words[i])
	}
	for ; i < len(words) && isAssignment(words[i]); i++ {
		l.Env = append(l.Env, words[i])
	}
	l.Args = words[i:]
	if len(l.Args) == 0 {
		return Line{}, fmt.Errorf("kernel command line %q: no program name", s)
	}
	return l, nil
}

// isAssignment reports whether w is NAME=VALUE with a shell-style NAME.
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

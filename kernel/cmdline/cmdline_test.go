package cmdline

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type parsed struct {
	Opts, Env, Args []string
	Truncated       bool
}

func parse(s string) parsed {
	var l Line
	l.ParseString(s)
	var p parsed
	for i := 0; i < l.NumOptions(); i++ {
		p.Opts = append(p.Opts, l.OptionAt(i))
	}
	for i := 0; i < l.NumEnv(); i++ {
		p.Env = append(p.Env, l.EnvAt(i))
	}
	for i := 0; i < l.NumArgs(); i++ {
		p.Args = append(p.Args, l.ArgAt(i))
	}
	p.Truncated = l.Truncated()
	return p
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want parsed
	}{
		{"", parsed{}},
		{"hello", parsed{Args: []string{"hello"}}},
		{"unikgo.verbose unikgo.mem=64M GOMEMLIMIT=20MiB X_1=a=b prog -flag arg",
			parsed{Opts: []string{"verbose", "mem=64M"}, Env: []string{"GOMEMLIMIT=20MiB", "X_1=a=b"}, Args: []string{"prog", "-flag", "arg"}}},
		{`prog "two words" "" tab	sep`, parsed{Args: []string{"prog", "two words", "", "tab", "sep"}}},
		{"prog A=1 unikgo.x", parsed{Args: []string{"prog", "A=1", "unikgo.x"}}},
		{"1A=2 prog", parsed{Args: []string{"1A=2", "prog"}}},
		{"=x prog", parsed{Args: []string{"=x", "prog"}}},
		{"  lead  and trail  ", parsed{Args: []string{"lead", "and", "trail"}}},
		{"prog \"unterminated quote", parsed{Args: []string{"prog", "unterminated quote"}}},
		{"prog nul\x00inside", parsed{Args: []string{"prog", "nulinside"}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parse(tt.in)); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestOptions(t *testing.T) {
	var l Line
	l.ParseString("unikgo.verbose unikgo.quiet=0 unikgo.mem=64M unikgo.boot=yes GOMEMLIMIT=1 p")
	for name, want := range map[string]bool{"verbose": true, "quiet": false, "mem": false, "boot": true, "absent": false} {
		if got := l.Option(name); got != want {
			t.Errorf("Option(%q) = %v, want %v", name, got, want)
		}
	}
	if v, ok := l.Value("mem"); v != "64M" || !ok {
		t.Errorf("Value(mem) = %q, %v", v, ok)
	}
	if !l.HasEnv("GOMEMLIMIT") || l.HasEnv("GOMEM") {
		t.Error("HasEnv wrong")
	}
}

func TestDuration(t *testing.T) {
	var l Line
	l.ParseString("unikgo.a=5ms unikgo.b=500us unikgo.c=7ns unikgo.d=0ms unikgo.e=5 unikgo.f=ms unikgo.g=5s " +
		"unikgo.h=3600000ms unikgo.i=3600001ms unikgo.j=99999999999999999999999ns unikgo.k unikgo.l=-1ms p")
	for _, tc := range []struct {
		name    string
		ns      uint64
		ok, bad bool
	}{
		{"a", 5_000_000, true, false},
		{"b", 500_000, true, false},
		{"c", 7, true, false},
		{"d", 0, true, false},
		{"e", 0, true, true}, // no unit
		{"f", 0, true, true}, // no number
		{"g", 0, true, true}, // seconds are not taken
		{"h", 3600_000_000_000, true, false},
		{"i", 0, true, true}, // over an hour
		{"j", 0, true, true}, // overflows
		{"k", 0, true, true}, // bare
		{"l", 0, true, true},
		{"absent", 0, false, false},
	} {
		ns, ok, bad := l.Duration(tc.name)
		if ns != tc.ns || ok != tc.ok || bad != tc.bad {
			t.Errorf("Duration(%q) = %d, %v, %v; want %d, %v, %v", tc.name, ns, ok, bad, tc.ns, tc.ok, tc.bad)
		}
	}
}

func TestLimits(t *testing.T) {
	p := parse(strings.Repeat("w ", MaxWords+5))
	if len(p.Args) != MaxWords || !p.Truncated {
		t.Errorf("%d words, truncated %v; want %d, true", len(p.Args), p.Truncated, MaxWords)
	}
	p = parse("prog " + strings.Repeat("x", MaxBytes+100))
	if !p.Truncated || len(p.Args[1]) != MaxBytes-len("prog") {
		t.Errorf("long word: truncated %v, len %d", p.Truncated, len(p.Args[1]))
	}
}

// FuzzParse: any command line parses without panicking, words stay within
// the buffer, and the counts add up.
func FuzzParse(f *testing.F) {
	f.Add("unikgo.verbose A=1 prog \"a b\" c")
	f.Add("\"")
	f.Add(strings.Repeat("x ", 300))
	f.Add("unikgo.timeslice=5ms unikgo.sleepslack=99999999999999999999us p")
	f.Fuzz(func(t *testing.T, s string) {
		var l Line
		l.ParseString(s)
		// Every option read as a duration: within bounds, or bad.
		for i := 0; i < l.NumOptions(); i++ {
			name, _, _ := strings.Cut(l.OptionAt(i), "=")
			ns, ok, bad := l.Duration(name)
			if !ok || (bad && ns != 0) || (!bad && ns > maxDuration) {
				t.Fatalf("Duration(%q) = %d, %v, %v", name, ns, ok, bad)
			}
		}
		if l.NumOptions()+l.NumEnv()+l.NumArgs() > MaxWords {
			t.Fatal("too many words")
		}
		total := 0
		for i := 0; i < l.NumArgs(); i++ {
			total += len(l.ArgAt(i))
		}
		if total > MaxBytes {
			t.Fatal("words exceed the buffer")
		}
	})
}

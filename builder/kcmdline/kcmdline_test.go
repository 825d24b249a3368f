package kcmdline

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestString(t *testing.T) {
	tests := []struct {
		name string
		line Line
		want string
	}{
		{"program only", Line{Args: []string{"hello"}}, "hello"},
		{"all parts", Line{
			Options: []string{"unikgo.debug", "unikgo.console=com1"},
			Env:     []string{"GREETING=hi", "_X1=2"},
			Args:    []string{"hello", "-v", "x"},
		}, "unikgo.debug unikgo.console=com1 GREETING=hi _X1=2 hello -v x"},
		{"blanks are quoted", Line{Env: []string{"MSG=a b"}, Args: []string{"p", "two words", "tab\there"}},
			`"MSG=a b" p "two words" "tab` + "\t" + `here"`},
		{"empty argument", Line{Args: []string{"p", ""}}, `p ""`},
		{"arguments may look like options", Line{Args: []string{"p", "unikgo.x", "A=b"}}, "p unikgo.x A=b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.line.String()
			if err != nil {
				t.Fatalf("String: %v", err)
			}
			if got != tt.want {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
			back, err := Parse(got)
			if err != nil {
				t.Fatalf("Parse(%q): %v", got, err)
			}
			if diff := cmp.Diff(tt.line, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStringRefuses(t *testing.T) {
	tests := []struct {
		name string
		line Line
		want string
	}{
		{"no program", Line{Env: []string{"A=1"}}, "no program"},
		{"option without prefix", Line{Options: []string{"debug"}, Args: []string{"p"}}, "kernel option"},
		{"bare prefix", Line{Options: []string{"unikgo."}, Args: []string{"p"}}, "kernel option"},
		{"bad env name", Line{Env: []string{"1A=x"}, Args: []string{"p"}}, "environment entry"},
		{"env without =", Line{Env: []string{"A"}, Args: []string{"p"}}, "environment entry"},
		{"program looks like env", Line{Args: []string{"A=b"}}, "program name"},
		{"program looks like option", Line{Args: []string{"unikgo.x"}}, "program name"},
		{"double quote", Line{Args: []string{"p", `say "hi"`}}, "double quotes"},
		{"newline", Line{Args: []string{"p", "a\nb"}}, "line breaks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.line.String()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("String = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  a  b\tc ", []string{"a", "b", "c"}},
		{`a "b c" d`, []string{"a", "b c", "d"}},
		{`A="x y"z`, []string{"A=x yz"}},
		{`""`, []string{""}},
	}
	for _, tt := range tests {
		got, err := Split(tt.in)
		if err != nil {
			t.Errorf("Split(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Split(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	if _, err := Split(`a "b`); err == nil {
		t.Error(`Split("a \"b") succeeded, want an unterminated-quote error`)
	}
	if _, err := Parse("unikgo.x A=1"); err == nil {
		t.Error("Parse without a program succeeded")
	}
}

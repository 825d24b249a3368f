package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// These cases are all decided before a lab boots, so they run in milliseconds.
func TestExitStatus(t *testing.T) {
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"--help"}, 0},
		{[]string{"frobnicate"}, 2},
		{[]string{"run", "--help"}, 0},
		{[]string{"run"}, 2},
		{[]string{"run", "a", "b"}, 2},
		{[]string{"run", "--no-such-flag", img}, 2},
		{[]string{"run", "--type", "hvm", img}, 2},
		{[]string{"run", "--disk", "nodevice", img}, 2},
		{[]string{"run", filepath.Join(t.TempDir(), "missing")}, 2},
		{[]string{"baseline", "extra-arg"}, 2},
		{[]string{"build", "--help"}, 0},
	} {
		if got := run(context.Background(), tt.args); got != tt.want {
			t.Errorf("xenlab %q: exit %d, want %d", tt.args, got, tt.want)
		}
	}
}

package sample

import "testing"

func TestPass(t *testing.T) {
	if Double(21) != 42 {
		t.Fatal("Double(21) != 42")
	}
}

// TestFail fails on purpose: unikbuild's tests select it with -run to check
// that a failing test makes a FAIL line and exit status 1.
func TestFail(t *testing.T) {
	t.Error("sample failure")
}

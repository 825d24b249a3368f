// Package sample gives `unikbuild test` one passing and one failing test.
package sample

// Double returns 2*n.
func Double(n int) int { return 2 * n }

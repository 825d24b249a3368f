// Command hello is the smallest real unikgo program: it prints a greeting
// with its arguments and one environment variable, then exits with status 3
// so that tests can tell its exit from a default one.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Printf("hello from unikgo: args=%q GREETING=%q\n", strings.Join(os.Args[1:], "|"), os.Getenv("GREETING"))
	os.Exit(3)
}

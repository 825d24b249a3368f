package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/unikgo/unikgo/builder"
)

const testSynopsis = `test [-run RE] [-skip RE] [-v] [-bench RE] [-short] [-count N] [-tags T] [run flags] PKG...

Builds each package's tests as an image, boots it and prints ok/FAIL lines
like go test. Exits 1 if any package fails.`

// defaultTestTimeout matches go test's default per-binary timeout.
const defaultTestTimeout = 10 * time.Minute

func runTest(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "test", testSynopsis)
	var rf runFlags
	rf.add(fs, defaultTestTimeout)
	runRE := fs.String("run", "", "run only tests matching `regexp`")
	skipRE := fs.String("skip", "", "do not run tests matching `regexp`")
	tags := fs.StringSlice("tags", nil, "build `tags` (comma-separated), as go test -tags")
	bench := fs.String("bench", "", "run benchmarks matching `regexp`")
	verbose := fs.BoolP("verbose", "v", false, "print every test's output")
	short := fs.Bool("short", false, "tell long-running tests to shorten their run time")
	count := fs.Int("count", 0, "run each test and benchmark `n` times")
	// go test spells them with one dash; accept that too.
	if err := parse(fs, singleDashLong(args, "run", "skip", "bench", "short", "count", "tags")); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("test: no packages given (see unikbuild test --help)")
	}
	pkgs, err := builder.ListPackages(ctx, "", "", fs.Args())
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "unikbuild-test-")
	if err != nil {
		return fmt.Errorf("creating a work directory: %v", err)
	}
	defer os.RemoveAll(work)

	// As go test does: a test that calls os.Exit(0) is a failure.
	testArgs := []string{"-test.paniconexit0"}
	if *runRE != "" {
		testArgs = append(testArgs, "-test.run="+*runRE)
	}
	if *skipRE != "" {
		testArgs = append(testArgs, "-test.skip="+*skipRE)
	}
	if *bench != "" {
		testArgs = append(testArgs, "-test.bench="+*bench)
	}
	if *verbose {
		testArgs = append(testArgs, "-test.v=true")
	}
	if *short {
		testArgs = append(testArgs, "-test.short")
	}
	if *count > 0 {
		testArgs = append(testArgs, fmt.Sprintf("-test.count=%d", *count))
	}
	if rf.timeout > 0 {
		testArgs = append(testArgs, "-test.timeout="+rf.timeout.String())
	}
	failed := false
	for i, pkg := range pkgs {
		ok, err := testOne(ctx, e, rf, pkg, filepath.Join(work, fmt.Sprintf("test%d", i)), testArgs, *tags, *verbose)
		if err != nil {
			return err
		}
		failed = failed || !ok
	}
	if failed {
		return &exitError{code: exitFailure}
	}
	return nil
}

// testOne builds and runs one package's tests and prints its summary line.
// It returns an error only for problems that stop the whole run.
func testOne(ctx context.Context, e env, rf runFlags, pkg, out string, testArgs, tags []string, verbose bool) (bool, error) {
	img, err := builder.BuildTest(ctx, builder.TestOptions{Package: pkg, Output: out, Progress: e.stderr, Tags: tags})
	var ce *builder.CompileError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(e.stdout, "%s\nFAIL\t%s [build failed]\n", ce.Output, pkg)
		return false, nil
	case err != nil:
		return false, err
	case img.NoTests:
		fmt.Fprintf(e.stdout, "?   \t%s\t[no test files]\n", pkg)
		return true, nil
	}
	cmdline, err := rf.cmdline(path.Base(pkg)+".test", testArgs)
	if err != nil {
		return false, usageError("test: %v", err)
	}
	var console bytes.Buffer
	w := e.stdout
	if !verbose {
		w = &console
	}
	start := time.Now()
	exit, err := boot(ctx, e, rf, img.Path, cmdline, w)
	elapsed := time.Since(start).Seconds()
	ok := err == nil && !exit.PoweredOff && exit.Status == 0
	if !ok {
		e.stdout.Write(console.Bytes())
		switch {
		case err != nil:
			fmt.Fprintf(e.stdout, "unikbuild: %v\n", err)
		case exit.PoweredOff:
			fmt.Fprintln(e.stdout, "unikbuild: guest stopped without an exit status")
		}
		fmt.Fprintf(e.stdout, "FAIL\t%s\t%.3fs\n", pkg, elapsed)
		return false, ctx.Err()
	}
	fmt.Fprintf(e.stdout, "ok  \t%s\t%.3fs\n", pkg, elapsed)
	return true, nil
}

// singleDashLong rewrites go test's single-dash long flags (-run, -bench)
// into pflag's double-dash form.
func singleDashLong(args []string, names ...string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		for _, n := range names {
			if a == "-"+n || len(a) > len(n)+1 && a[:len(n)+2] == "-"+n+"=" {
				a = "-" + a
				break
			}
		}
		out = append(out, a)
	}
	return out
}

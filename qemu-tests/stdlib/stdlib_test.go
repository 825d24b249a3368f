// Package stdlib_test runs the standard library's own tests inside unikgo
// images under QEMU: each package's test binary is linked with the kernel
// (builder.BuildTest), booted, and must print PASS and exit 0.
//
// Skipped tests need what a unikgo image deliberately lacks, listed with
// each entry: a filesystem (testdata files, zoneinfo), other processes
// (the test re-executes itself or runs the go tool), or a network stack
// (issue 6 brings one). One test is skipped for speed alone: its wall-clock
// budget assumes hardware, not QEMU's TCG emulation.
package stdlib_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder"
	"github.com/unikgo/unikgo/builder/qemu"
)

type stdPkg struct {
	pkg  string
	skip string // -test.skip regexp
	why  string // why those tests cannot run in an image
	tags []string
}

var pkgs = []stdPkg{
	{pkg: "strings"},
	{pkg: "strconv"},
	{pkg: "sort"},
	{pkg: "bytes"},
	{pkg: "unicode/utf8"},
	{pkg: "encoding/json", skip: "^TestHTTPDecoding$", why: "network: starts an httptest server"},
	{pkg: "encoding/binary"},
	{pkg: "crypto/sha256"},
	{pkg: "math/big", skip: "^TestLinkerGC$", why: "processes: runs the go tool"},
	{pkg: "container/heap"},
	{pkg: "regexp", skip: "^(TestRE2Search|TestRE2Exhaustive|TestFowler)$", why: "filesystem: reads testdata/"},
	{pkg: "sync", skip: "^(TestMutexMisuse|TestIssue76126|ExampleOnceValues)$",
		why: "processes: the tests re-execute the test binary; ExampleOnceValues reads its own source file"},
	{pkg: "time", skip: "^(TestLoadLocationFromTZDataSlim|TestLongAdjustTimers)$", tags: []string{"timetzdata"},
		why: "filesystem: TestLoadLocationFromTZDataSlim reads zone files from testdata/ (zoneinfo itself is embedded " +
			"with -tags timetzdata); emulation speed: TestLongAdjustTimers allows 60 s of wall time for ~1M channel " +
			"operations, too little under QEMU TCG (Go skips it in -short mode on one CPU)"},
}

func TestStdlib(t *testing.T) {
	if _, err := qemu.LookPath(qemu.Binary); err != nil {
		t.Fatalf("%v (run scripts/setup)", err)
	}
	dir := t.TempDir()
	for _, p := range pkgs {
		t.Run(strings.ReplaceAll(p.pkg, "/", "_"), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
			defer cancel()
			img := filepath.Join(dir, strings.ReplaceAll(p.pkg, "/", "_")+".img")
			if _, err := builder.BuildTest(ctx, builder.TestOptions{Package: p.pkg, Output: img, Tags: p.tags}); err != nil {
				t.Fatalf("building the tests of %s: %v", p.pkg, err)
			}
			cmdline := "unikgo.quiet " + filepath.Base(p.pkg) + ".test -test.paniconexit0 -test.timeout=20m"
			if p.skip != "" {
				cmdline += " -test.skip=" + p.skip
				t.Logf("skipping %s: %s", p.skip, p.why)
			}
			var out bytes.Buffer
			// Some suites' peak heap exceeds 128 MiB (regexp, json).
			ex, err := qemu.Run(ctx, qemu.Config{Image: img, Cmdline: cmdline, Memory: "512M",
				Timeout: 22 * time.Minute, Stdout: &out, Stderr: os.Stderr})
			if err != nil {
				t.Fatalf("%s: %v\n%s", p.pkg, err, out.String())
			}
			if ex.Status != 0 || !strings.Contains(out.String(), "PASS") {
				t.Fatalf("%s: exit status %d\n%s", p.pkg, ex.Status, out.String())
			}
		})
	}
}

package xenlab

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder"
)

// TestBuilderPVHStubOnXen boots the image our builder makes from its test stub on real
// Xen: the stub prints "unikgo pvh stub" to port 0xE9 and halts with interrupts off,
// which Xen turns into a poweroff.
func TestBuilderPVHStubOnXen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "pvhstub"+builder.ImageSuffix)
	img, err := builder.Build(ctx, builder.BuildOptions{
		Package:     builder.StubPackage,
		EntrySymbol: builder.StubEntrySymbol,
		NoKernel:    true,
		Output:      out,
	})
	if err != nil {
		t.Fatalf("build the PVH stub: %v", err)
	}
	runPVH(t, lab(t), "pvhstub", img.Path, regexp.MustCompile(`^unikgo pvh stub$`))
}

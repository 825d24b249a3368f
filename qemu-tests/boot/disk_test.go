package boot_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/unikgo/unikgo/builder/qemu"
)

// TestDisksVirtio is the storage acceptance under QEMU: the guest writes
// 64 MiB of seeded random data to /dev/vda (virtio-blk) with package os,
// flushes, reads it back and verifies it; once QEMU has exited, the
// backing file's first 64 MiB hash to what the guest wrote. The read-only
// /dev/vdb refuses writes with EROFS, and a read at the end is EOF.
func TestDisksVirtio(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rw, ro := filepath.Join(dir, "rw.img"), filepath.Join(dir, "ro.img")
	if err := os.WriteFile(rw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(rw, 80<<20); err != nil {
		t.Fatal(err)
	}
	roData := make([]byte, 1<<20)
	copy(roData, "read-only disk!\n")
	if err := os.WriteFile(ro, roData, 0o644); err != nil {
		t.Fatal(err)
	}
	r := bootWith(t, qemu.Config{
		Image: image(t, "./qemu-tests/xen/testdata/disk"), Cmdline: "DISK=/dev/vda RODISK=/dev/vdb disk 64 7",
		Timeout: 10 * time.Minute, Memory: "256M", Disks: []string{rw}, ReadOnlyDisks: []string{ro},
	})
	expect(t, r, 0, "disk: /dev/vda is 83886080 bytes", "disk: 64 MiB written, flushed and verified",
		"disk: /dev/vdb refuses writes", "disk: ok")
	m := regexp.MustCompile(`disk: sha256 ([0-9a-f]{64})`).FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("no sha256 line\nconsole:\n%s", r.out)
	}
	if l := regexp.MustCompile(`disk: 64 MiB .*`).FindString(r.out); l != "" {
		t.Log(l)
	}
	data, err := os.ReadFile(rw)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(data[:64<<20])); got != m[1] {
		t.Errorf("backing file's first 64 MiB hash to %s, the guest wrote %s", got, m[1])
	}
}

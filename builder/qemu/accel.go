package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unikgo/unikgo/builder/pvhnote"
)

// Probing KVM: an open /dev/kvm is not enough (some hosts accept the ioctls
// but hang ordinary guests), so unikbuild boots a tiny PVH guest with
// -accel kvm and uses KVM only if it reports probeStatus in time.
const (
	probeStatus  = 7
	probeTimeout = 5 * time.Second
	probeLoad    = 0x100000 // 1 MiB, above QEMU's option ROM data
	// cacheFile lives under os.UserCacheDir()/unikgo.
	cacheFile = "accel.json"
)

// kvmDevice is the KVM device node (a variable for tests).
var kvmDevice = "/dev/kvm"

// probeCode writes probeStatus to the debug-exit port and halts. Each
// instruction encodes the same in 32- and 64-bit mode.
var probeCode = []byte{
	0xb0, probeStatus, // mov al, 7
	0xba, DebugExitPort, 0, 0, 0, // mov edx, 0xf4
	0xee,       // out dx, al
	0xfa,       // cli
	0xf4,       // hlt
	0xeb, 0xfc, // jmp back to cli
}

// ProbeImage returns the image the KVM probe boots. It is exported for tests
// and for checking a QEMU installation by hand.
func ProbeImage() []byte { return pvhnote.Minimal(probeCode, probeLoad) }

// Choice is the accelerator to use and why.
type Choice struct {
	Accel  Accel
	Reason string
}

func (c Choice) String() string { return fmt.Sprintf("accelerator: %s (%s)", c.Accel, c.Reason) }

// ChooseAccel returns KVM only when a probe guest really ran under it. The
// answer is cached in cacheDir, keyed by the host kernel release and the
// QEMU version, so the probe costs its few seconds once. An empty cacheDir
// disables the cache.
func ChooseAccel(ctx context.Context, binary, cacheDir string) Choice {
	f, err := os.OpenFile(kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return Choice{TCG, "no usable " + kvmDevice}
	}
	f.Close()
	key := cacheKey(ctx, binary)
	cache := readCache(cacheDir)
	if a, ok := cache[key]; ok {
		return Choice{a, "cached probe result"}
	}
	choice := probeKVM(ctx, binary)
	if ctx.Err() == nil && cacheDir != "" && key != "" {
		cache[key] = choice.Accel
		writeCache(cacheDir, cache)
	}
	return choice
}

func probeKVM(ctx context.Context, binary string) Choice {
	dir, err := os.MkdirTemp("", "unikbuild-probe-")
	if err != nil {
		return Choice{TCG, "KVM probe failed: " + err.Error()}
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "probe")
	if err := os.WriteFile(img, ProbeImage(), 0o644); err != nil {
		return Choice{TCG, "KVM probe failed: " + err.Error()}
	}
	exit, err := Run(ctx, Config{Image: img, Accel: KVM, Binary: binary, Timeout: probeTimeout})
	switch {
	case err != nil:
		var te *TimeoutError
		if errors.As(err, &te) {
			return Choice{TCG, "KVM probe guest hung"}
		}
		return Choice{TCG, "KVM probe failed: " + err.Error()}
	case exit.PoweredOff || exit.Status != probeStatus:
		return Choice{TCG, "KVM probe guest misbehaved"}
	}
	return Choice{KVM, "probe guest ran"}
}

// cacheKey identifies the host kernel and the QEMU build.
func cacheKey(ctx context.Context, binary string) string {
	if binary == "" {
		binary = Binary
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return ""
	}
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return ""
	}
	qemuVersion, _, _ := strings.Cut(string(out), "\n")
	return unix.ByteSliceToString(uts.Release[:]) + " | " + strings.TrimSpace(qemuVersion)
}

func readCache(dir string) map[string]Accel {
	m := map[string]Accel{}
	if dir == "" {
		return m
	}
	b, err := os.ReadFile(filepath.Join(dir, cacheFile))
	if err != nil {
		return m
	}
	if json.Unmarshal(b, &m) != nil {
		return map[string]Accel{}
	}
	return m
}

// writeCache replaces the cache file atomically; failures only cost a
// probe next time, so they are ignored.
func writeCache(dir string, m map[string]Accel) {
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil || os.MkdirAll(dir, 0o755) != nil {
		return
	}
	tmp, err := os.CreateTemp(dir, cacheFile+".*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), filepath.Join(dir, cacheFile)) != nil {
		os.Remove(tmp.Name())
	}
}

// DefaultCacheDir is the user cache directory for unikbuild, or "" if the
// system has none.
func DefaultCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "unikgo")
}

package xenlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// assets holds the dom0 build script and everything it installs into the dom0 and the
// baseline guest. They are embedded so tests and the xenlab command work from any
// directory, and their bytes are part of the cache key.
//
//go:embed assets
var assets embed.FS

// Artifacts are the boot files of one built lab: the hypervisor, the kernel, and the
// initramfs images of dom0 and of the Linux baseline guest.
type Artifacts struct {
	Key            string // cache key (hash of package versions and build assets)
	Dir            string // the cache entry
	Xen            string // Xen as a multiboot ELF (QEMU -kernel)
	Kernel         string // Linux kernel for dom0 and the baseline guest
	Dom0Initrd     string // dom0's whole root, uncompressed cpio
	BaselineInitrd string // the baseline guest's busybox initramfs
	Manifest       string // installed package versions, one "name version" per line
}

// BuildOptions control where the dom0 is cached and how building reports progress.
type BuildOptions struct {
	// CacheDir overrides the cache root (default DefaultCacheDir()).
	CacheDir string
	// Progress receives one line per build step and a heartbeat while a step runs.
	// Nil discards progress.
	Progress io.Writer
}

// DefaultCacheDir returns ${XDG_CACHE_HOME:-$HOME/.cache}/unikgo/xenlab.
func DefaultCacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "unikgo", "xenlab")
}

func artifactsIn(dir, key string) *Artifacts {
	return &Artifacts{
		Key:            key,
		Dir:            dir,
		Xen:            filepath.Join(dir, "xen"),
		Kernel:         filepath.Join(dir, "vmlinuz"),
		Dom0Initrd:     filepath.Join(dir, "dom0.cpio"),
		BaselineInitrd: filepath.Join(dir, "baseline.cpio.gz"),
		Manifest:       filepath.Join(dir, "manifest.txt"),
	}
}

func (a *Artifacts) complete() bool {
	for _, p := range []string{a.Xen, a.Kernel, a.Dom0Initrd, a.BaselineInitrd, a.Manifest} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			return false
		}
	}
	return true
}

// EnsureArtifacts returns the cached dom0 for the current package versions, building it
// first if needed. Building takes a few minutes and downloads from deb.debian.org; it
// happens in a temporary directory renamed into place at the end, so an interrupted build
// never leaves a cache entry behind, and a lock file serialises concurrent builders.
func EnsureArtifacts(ctx context.Context, opts BuildOptions) (*Artifacts, error) {
	root := opts.CacheDir
	if root == "" {
		root = DefaultCacheDir()
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("xenlab: create cache dir: %w", err)
	}
	scripts, err := os.MkdirTemp(root, "assets-")
	if err != nil {
		return nil, fmt.Errorf("xenlab: %w", err)
	}
	defer os.RemoveAll(scripts)
	key, rootKey, err := cacheKey(ctx, scripts)
	if err != nil {
		return nil, err
	}
	script := filepath.Join(scripts, "build-dom0.sh")
	dir := filepath.Join(root, key)
	art := artifactsIn(dir, key)
	if art.complete() {
		return art, nil
	}

	unlock, err := lockFile(ctx, filepath.Join(root, key+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if art.complete() { // another process built it while we waited
		return art, nil
	}
	tmp, err := os.MkdirTemp(root, "build-"+key+"-")
	if err != nil {
		return nil, fmt.Errorf("xenlab: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "out")
	fmt.Fprintf(progress, "xenlab: building dom0 %s into %s (once per package or build-asset change)\n", key, dir)
	start := time.Now()
	// The debootstrapped root is kept per package versions (not per asset digest), so an
	// edited dom0-init or hotplug script rebuilds in seconds.
	roots := filepath.Join(root, "roots")
	if err := os.MkdirAll(roots, 0o755); err != nil {
		return nil, fmt.Errorf("xenlab: %w", err)
	}
	rootTar := filepath.Join(roots, rootKey+".tar")
	if err := runWithProgress(ctx, progress, "sh", script, "build", out, rootTar); err != nil {
		if data, rerr := os.ReadFile(out + ".log"); rerr == nil {
			keep := filepath.Join(root, "build-"+key+".log")
			_ = os.WriteFile(keep, data, 0o644)
			return nil, fmt.Errorf("xenlab: building dom0 failed: %w (log kept in %s)", err, keep)
		}
		return nil, fmt.Errorf("xenlab: building dom0 failed: %w", err)
	}
	if !artifactsIn(out, key).complete() {
		return nil, fmt.Errorf("xenlab: dom0 build in %s finished without all artefacts", out)
	}
	_ = os.RemoveAll(dir) // a partial entry from an older, non-atomic layout
	if err := os.Rename(out, dir); err != nil {
		return nil, fmt.Errorf("xenlab: install dom0 into cache: %w", err)
	}
	fmt.Fprintf(progress, "xenlab: dom0 built in %s\n", time.Since(start).Round(time.Second))
	return art, nil
}

// CacheKey returns the key the current dom0 is cached under: a hash of the Debian package
// versions apt sees for the build and of the build assets. CI can key its cache with it.
func CacheKey(ctx context.Context) (string, error) {
	scripts, err := os.MkdirTemp("", "xenlab-assets-")
	if err != nil {
		return "", fmt.Errorf("xenlab: %w", err)
	}
	defer os.RemoveAll(scripts)
	key, _, err := cacheKey(ctx, scripts)
	return key, err
}

// cacheKey writes the assets into scripts and computes the key of the artefacts and the
// key of the debootstrapped root (package versions and root format only).
func cacheKey(ctx context.Context, scripts string) (key, rootKey string, err error) {
	digest, err := writeAssets(scripts)
	if err != nil {
		return "", "", err
	}
	var verOut, verErr bytes.Buffer
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(scripts, "build-dom0.sh"), "versions")
	cmd.Stdout, cmd.Stderr = &verOut, &verErr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("xenlab: resolve dom0 package versions: %s (%v); run qemu-tests/xenlab/install-deps.sh",
			bytes.TrimSpace(verErr.Bytes()), err)
	}
	rh := sha256.Sum256(verOut.Bytes())
	h := sha256.New()
	h.Write(verOut.Bytes())
	h.Write(digest)
	return hex.EncodeToString(h.Sum(nil))[:16], hex.EncodeToString(rh[:])[:16], nil
}

// writeAssets copies the embedded assets into dir (executable) and returns a digest of
// their names and contents in a stable order.
func writeAssets(dir string) ([]byte, error) {
	var names []string
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("xenlab: read embedded assets: %w", err)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		data, err := assets.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("xenlab: read embedded asset %s: %w", n, err)
		}
		fmt.Fprintf(h, "%s %d\n", n, len(data))
		h.Write(data)
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(n)), data, 0o755); err != nil {
			return nil, fmt.Errorf("xenlab: write asset: %w", err)
		}
	}
	return h.Sum(nil), nil
}

// runWithProgress runs a command, copying its stderr lines to progress prefixed with
// "xenlab: ", and prints a heartbeat when a step has been quiet for a while.
func runWithProgress(ctx context.Context, progress io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	pr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var mu sync.Mutex
	last := time.Now()
	start := last
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(heartbeatInterval / 4)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				mu.Lock()
				if time.Since(last) >= heartbeatInterval {
					fmt.Fprintf(progress, "xenlab:   still building (%s)\n", time.Since(start).Round(time.Second))
					last = time.Now()
				}
				mu.Unlock()
			}
		}
	}()
	var tail []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintf(progress, "xenlab: %s\n", sc.Text())
		last = time.Now()
		mu.Unlock()
		tail = append(tail, sc.Text())
		if len(tail) > 5 {
			tail = tail[1:]
		}
	}
	err = cmd.Wait()
	close(done)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(tail) > 0 {
			return fmt.Errorf("%v: %s", err, tail[len(tail)-1])
		}
		return err
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling so ctx can cancel the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("xenlab: open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("xenlab: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("xenlab: waiting for another dom0 build (%s): %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// Package xlconfig writes xl domain configuration files (xl.cfg(5)) that
// boot a unikgo image as a Xen PVH guest.
package xlconfig

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Defaults for fields left empty.
const (
	DefaultMemoryMiB = 128
	DefaultVCPUs     = 1
	// diskVdevPrefix names virtual block devices: xvda, xvdb, ...
	diskVdevPrefix = "xvd"
	maxDisks       = 26
)

// Config is one PVH guest.
type Config struct {
	Name      string   // domain name
	Kernel    string   // image path; made absolute, since xl resolves relative paths from its own directory
	MemoryMiB int      // guest RAM in MiB
	VCPUs     int      // virtual CPUs
	Cmdline   string   // kernel command line
	VIFs      []string // xl vif specs, e.g. "bridge=xenbr0"
	// Disks are xl disk specs; a bare file or device path becomes a raw,
	// writable disk xvda, xvdb, ... in order.
	Disks []string
}

// Render returns the configuration file's text.
func (c Config) Render() (string, error) {
	if c.Name == "" || c.Kernel == "" {
		return "", fmt.Errorf("xl config: a name and a kernel image are needed")
	}
	kernel, err := filepath.Abs(c.Kernel)
	if err != nil {
		return "", fmt.Errorf("xl config: kernel path: %v", err)
	}
	mem, vcpus := c.MemoryMiB, c.VCPUs
	if mem == 0 {
		mem = DefaultMemoryMiB
	}
	if vcpus == 0 {
		vcpus = DefaultVCPUs
	}
	if mem < 0 || vcpus < 0 {
		return "", fmt.Errorf("xl config: memory %d MiB and %d vCPUs: want positive numbers", mem, vcpus)
	}
	if len(c.Disks) > maxDisks {
		return "", fmt.Errorf("xl config: %d disks: at most %d", len(c.Disks), maxDisks)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# xl config for a unikgo PVH guest (written by unikbuild)\n")
	fmt.Fprintf(&b, "name = %s\n", quote(c.Name))
	fmt.Fprintf(&b, "type = \"pvh\"\n")
	fmt.Fprintf(&b, "kernel = %s\n", quote(kernel))
	if c.Cmdline != "" {
		fmt.Fprintf(&b, "cmdline = %s\n", quote(c.Cmdline))
	}
	fmt.Fprintf(&b, "memory = %d\n", mem)
	fmt.Fprintf(&b, "vcpus = %d\n", vcpus)
	if len(c.VIFs) > 0 {
		fmt.Fprintf(&b, "vif = %s\n", list(c.VIFs))
	}
	if len(c.Disks) > 0 {
		specs := make([]string, len(c.Disks))
		for i, d := range c.Disks {
			specs[i] = DiskSpec(d, i)
		}
		fmt.Fprintf(&b, "disk = %s\n", list(specs))
	}
	// A service VM that stops should stay stopped, not loop.
	fmt.Fprintf(&b, "on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"destroy\"\n")
	return b.String(), nil
}

// DiskSpec turns a bare path into a raw disk spec for device index i;
// anything containing '=' or ',' is taken as an xl disk spec already (the
// key=value form or the old positional "phy:/dev/x,xvda,w" form).
func DiskSpec(d string, i int) string {
	if strings.ContainsAny(d, "=,") {
		return d
	}
	return "format=raw, vdev=" + diskVdevPrefix + string(rune('a'+i)) + ", access=rw, target=" + d
}

// ParseMemory reads a size such as "128", "128M" or "1G" as MiB.
func ParseMemory(s string) (int, error) {
	num, mult := strings.TrimSpace(s), 1
	switch {
	case strings.HasSuffix(strings.ToUpper(num), "G"):
		num, mult = num[:len(num)-1], 1024
	case strings.HasSuffix(strings.ToUpper(num), "M"):
		num = num[:len(num)-1]
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("memory size %q: want a positive number of MiB, optionally with M or G", s)
	}
	return n * mult, nil
}

// quote writes s as an xl config string: double quotes, with backslash and
// double quote escaped (libxlu's parser understands C-style escapes).
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func list(items []string) string {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = quote(it)
	}
	return "[ " + strings.Join(q, ", ") + " ]"
}

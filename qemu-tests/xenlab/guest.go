package xenlab

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GuestType is xl's domain type.
type GuestType string

const (
	// PVH is how our unikernel images boot.
	PVH GuestType = "pvh"
	// PV is how the Linux baseline guest boots (Linux PVH does not start in this nested
	// setup, see docs/xen-lab.md).
	PV GuestType = "pv"
)

// Disk is a guest disk backed by a host file (copied into the lab and attached through a
// loop device by the block-lab hotplug script).
type Disk struct {
	HostPath string // raw image on the host
	Vdev     string // guest device name, e.g. "xvda"
	ReadOnly bool
}

// GuestConfig describes a domain; Create turns it into an xl config.
type GuestConfig struct {
	Name      string
	Type      GuestType
	Kernel    string // host path of the kernel image
	Ramdisk   string // host path of an initramfs, optional
	Cmdline   string // kernel command line (xl "extra"), optional
	MemoryMiB int    // default 64
	VCPUs     int    // default 1
	// NICs is the number of vifs attached to the lab's bridge (MACs 00:16:3e:xx:yy:nn).
	NICs  int
	Disks []Disk
	// Extra lines appended verbatim to the xl config (they override earlier keys).
	Extra []string
	// Xenstore keys (relative to the domain's home, /local/domain/ID) and
	// values written while the domain is still paused, as a toolstack such
	// as Qubes' writes qubes-ip and the like before the guest runs.
	Xenstore map[string]string
}

// ShutdownReason is the reason code xl reports when a domain shuts down.
type ShutdownReason int

// Xen's shutdown reasons (SHUTDOWN_* in public/sched.h).
const (
	Poweroff  ShutdownReason = 0
	Reboot    ShutdownReason = 1
	Suspend   ShutdownReason = 2
	Crash     ShutdownReason = 3
	Watchdog  ShutdownReason = 4
	SoftReset ShutdownReason = 5
)

func (r ShutdownReason) String() string {
	names := []string{"poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset"}
	if r >= 0 && int(r) < len(names) {
		return names[r]
	}
	return "reason " + strconv.Itoa(int(r))
}

// Guest is a domain created in a lab.
type Guest struct {
	lab     *Lab
	Name    string
	DomID   int
	Created time.Time // when the domain was unpaused
	cfgPath string    // host path of the xl config
}

var guestNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// XLConfig renders the xl configuration, with file paths as dom0 sees them under the share.
func (c GuestConfig) XLConfig() (string, error) {
	if !guestNameRE.MatchString(c.Name) {
		return "", fmt.Errorf("xenlab: guest name %q: use letters, digits, '.', '_', '-'", c.Name)
	}
	if c.Type != PVH && c.Type != PV {
		return "", fmt.Errorf("xenlab: guest %s: type must be pvh or pv, not %q", c.Name, c.Type)
	}
	if c.Kernel == "" {
		return "", fmt.Errorf("xenlab: guest %s: no kernel", c.Name)
	}
	mem, vcpus := c.MemoryMiB, c.VCPUs
	if mem <= 0 {
		mem = 64
	}
	if vcpus <= 0 {
		vcpus = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name = %q\ntype = %q\n", c.Name, string(c.Type))
	fmt.Fprintf(&b, "kernel = %q\n", c.dom0Path("kernel"))
	if c.Ramdisk != "" {
		fmt.Fprintf(&b, "ramdisk = %q\n", c.dom0Path("ramdisk"))
	}
	if c.Cmdline != "" {
		fmt.Fprintf(&b, "extra = %q\n", c.Cmdline)
	}
	fmt.Fprintf(&b, "memory = %d\nvcpus = %d\n", mem, vcpus)
	// QEMU's TCG has no invariant TSC, so Xen finds the lab's TSC "not
	// constant or reliable" and by default emulates every RDTSC of every
	// guest: a VM exit each, which made a unikgo system call cost ~250 us
	// and slows the Linux baseline's clock too. On hardware with an
	// invariant TSC guests read it natively, which is what the lab should
	// measure; TCG's TSC is one host clock, so native reads are sound.
	b.WriteString("tsc_mode = \"native\"\n")
	b.WriteString("on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"destroy\"\n")
	if c.NICs > 0 {
		var vifs []string
		for i := 0; i < c.NICs; i++ {
			vifs = append(vifs, fmt.Sprintf("'bridge=%s,script=vif-lab,mac=%s'", BridgeName, c.MAC(i)))
		}
		fmt.Fprintf(&b, "vif = [ %s ]\n", strings.Join(vifs, ", "))
	}
	if len(c.Disks) > 0 {
		var disks []string
		for i, d := range c.Disks {
			if d.Vdev == "" || d.HostPath == "" {
				return "", fmt.Errorf("xenlab: guest %s: disk %d needs HostPath and Vdev", c.Name, i)
			}
			access := "rw"
			if d.ReadOnly {
				access = "ro"
			}
			disks = append(disks, fmt.Sprintf("'format=raw,vdev=%s,access=%s,script=block-lab,target=%s'",
				d.Vdev, access, c.dom0Path("disk-"+d.Vdev)))
		}
		fmt.Fprintf(&b, "disk = [ %s ]\n", strings.Join(disks, ", "))
	}
	for _, e := range c.Extra {
		b.WriteString(e + "\n")
	}
	return b.String(), nil
}

// MAC returns the MAC address of the guest's i-th vif: Xen's OUI, then bytes derived from
// the name so guests in one lab differ.
func (c GuestConfig) MAC(i int) string {
	var h uint16 = 0x5a5a
	for _, ch := range c.Name {
		h = h*31 + uint16(ch)
	}
	return fmt.Sprintf("00:16:3e:%02x:%02x:%02x", h>>8, h&0xff, i)
}

// DiskPath is where dom0 sees the backing file of the guest's disk vdev.
func (c GuestConfig) DiskPath(vdev string) string { return c.dom0Path("disk-" + vdev) }

func (c GuestConfig) dom0Path(what string) string {
	return ShareMount + "/" + imagesDirName + "/" + c.Name + "." + what
}

// Create copies the guest's files into the lab, creates the domain paused (so its domid is
// known before it can run and exit), then unpauses it.
func (l *Lab) Create(ctx context.Context, c GuestConfig) (*Guest, error) {
	cfg, err := c.XLConfig()
	if err != nil {
		return nil, err
	}
	files := map[string]string{"kernel": c.Kernel}
	if c.Ramdisk != "" {
		files["ramdisk"] = c.Ramdisk
	}
	for _, d := range c.Disks {
		files["disk-"+d.Vdev] = d.HostPath
	}
	for what, src := range files {
		if _, err := l.CopyIn(src, c.Name+"."+what); err != nil {
			return nil, err
		}
	}
	return l.create(ctx, c.Name, cfg, c.Xenstore)
}

// CreateFromXL creates a domain from xl config text whose name = line is name. Files it
// names must already be in dom0 (see CopyIn). Any old logs of a guest with that name are
// removed first, so waits see only this run.
func (l *Lab) CreateFromXL(ctx context.Context, name, xlConfig string) (*Guest, error) {
	return l.create(ctx, name, xlConfig, nil)
}

// create is CreateFromXL, writing keys into the domain's xenstore home
// before it is unpaused.
func (l *Lab) create(ctx context.Context, name, xlConfig string, keys map[string]string) (*Guest, error) {
	for k := range keys {
		if k == "" || strings.HasPrefix(k, "/") || strings.Contains(k, "..") {
			return nil, fmt.Errorf("xenlab: guest %s: xenstore key %q: want a path relative to the domain's home", name, k)
		}
	}
	if !guestNameRE.MatchString(name) {
		return nil, fmt.Errorf("xenlab: guest name %q: use letters, digits, '.', '_', '-'", name)
	}
	hostCfg := filepath.Join(l.share, imagesDirName, name+".cfg")
	if err := os.WriteFile(hostCfg, []byte(xlConfig), 0o644); err != nil {
		return nil, fmt.Errorf("xenlab: write xl config: %w", err)
	}
	g := &Guest{lab: l, Name: name, cfgPath: hostCfg}
	for _, p := range []string{g.ConsoleLogPath(), g.XLLogPath()} {
		_ = os.Remove(p)
	}
	cfg := ShareMount + "/" + imagesDirName + "/" + name + ".cfg"
	out, err := l.MustSucceed(ctx, fmt.Sprintf("xl create -p %s >/dev/null 2>/tmp/xl-create.err || { cat /tmp/xl-create.err; exit 1; }\nxl domid %s", cfg, name))
	if err != nil {
		return nil, fmt.Errorf("xenlab: create guest %s: %w", name, err)
	}
	id, err := strconv.Atoi(strings.TrimSpace(lastLine(out)))
	if err != nil {
		return nil, fmt.Errorf("xenlab: create guest %s: no domid in %q", name, out)
	}
	g.DomID = id
	var w strings.Builder
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		fmt.Fprintf(&w, "xenstore-write %s %s\n", shellQuote(fmt.Sprintf("/local/domain/%d/%s", id, k)), shellQuote(keys[k]))
	}
	if w.Len() > 0 {
		if out, err := l.MustSucceed(ctx, w.String()); err != nil {
			l.MustSucceed(ctx, "xl destroy "+name)
			return nil, fmt.Errorf("xenlab: guest %s: writing its xenstore keys: %w\n%s", name, err, out)
		}
	}
	if _, err := l.MustSucceed(ctx, "xl unpause "+name); err != nil {
		return nil, fmt.Errorf("xenlab: start guest %s: %w", name, err)
	}
	g.Created = time.Now()
	return g, nil
}

// ConsoleLogPath is the host path of the guest's PV console log (written by xenconsoled).
func (g *Guest) ConsoleLogPath() string {
	return filepath.Join(g.lab.share, logsDirName, "console", "guest-"+g.Name+".log")
}

// XLLogPath is the host path of xl's log for the guest (its shutdown reason is there).
func (g *Guest) XLLogPath() string {
	return filepath.Join(g.lab.share, logsDirName, "xl-"+g.Name+".log")
}

// XLLog returns xl's log for the guest so far (creation, shutdown reason, cleanup).
func (g *Guest) XLLog() string { return readText(g.XLLogPath()) }

// Console returns the guest's PV console output so far.
func (g *Guest) Console() string { return readText(g.ConsoleLogPath()) }

// XenLines returns the guest's lines on Xen's console so far: its port 0xE9 output and
// Xen's messages about it, with the "(dN) " prefix removed.
func (g *Guest) XenLines() []string {
	return domainLines(readText(g.lab.XenLogPath()), g.DomID)
}

// domainLines picks the lines Xen printed for domain id ("(dN) text") out of Xen's console.
func domainLines(xenLog string, id int) []string {
	tag := fmt.Sprintf("(d%d) ", id)
	var out []string
	for _, line := range strings.Split(xenLog, "\n") {
		if i := strings.Index(line, tag); i >= 0 {
			out = append(out, strings.TrimRight(line[i+len(tag):], "\r"))
		}
	}
	return out
}

// WaitConsole waits until a line of the guest's PV console matches re and returns it.
func (g *Guest) WaitConsole(ctx context.Context, re *regexp.Regexp) (string, error) {
	return g.waitLine(ctx, "PV console", re, func() []string {
		return strings.Split(strings.ReplaceAll(g.Console(), "\r", ""), "\n")
	})
}

// WaitXen waits until one of the guest's lines on Xen's console (port 0xE9 output)
// matches re and returns it.
func (g *Guest) WaitXen(ctx context.Context, re *regexp.Regexp) (string, error) {
	return g.waitLine(ctx, "Xen console", re, g.XenLines)
}

func (g *Guest) waitLine(ctx context.Context, what string, re *regexp.Regexp, lines func() []string) (string, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		for _, line := range lines() {
			if re.MatchString(line) {
				return line, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("xenlab: guest %s (d%d): no %s line matching %q: %w; logs: %s, %s",
				g.Name, g.DomID, what, re, ctx.Err(), g.ConsoleLogPath(), g.lab.XenLogPath())
		case <-g.lab.qemuDone:
			return "", fmt.Errorf("xenlab: guest %s: QEMU exited while waiting for %q; see %s", g.Name, re, g.lab.XenLogPath())
		case <-t.C:
		}
	}
}

var shutdownRE = regexp.MustCompile(`Domain (\d+) has shut down, reason code (\d+)`)

// WaitShutdown waits until the guest shuts down and returns xl's shutdown reason. It
// returns once xl has also cleaned the domain up (devices and hotplug scripts released),
// or a few seconds after the shutdown when the configuration keeps the domain. If ctx ends
// first, the guest is destroyed (its logs stay) and an error names the logs.
func (g *Guest) WaitShutdown(ctx context.Context) (ShutdownReason, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var reason ShutdownReason = -1
	var shutAt time.Time
	for {
		log := g.XLLog()
		if reason < 0 {
			for _, m := range shutdownRE.FindAllStringSubmatch(log, -1) {
				if id, _ := strconv.Atoi(m[1]); id == g.DomID {
					r, _ := strconv.Atoi(m[2])
					reason, shutAt = ShutdownReason(r), time.Now()
				}
			}
		}
		if reason >= 0 && (strings.Contains(log, xlCleanedUp) || time.Since(shutAt) > cleanupGrace) {
			return reason, nil
		}
		select {
		case <-ctx.Done():
			if reason >= 0 {
				return reason, nil // shut down; only xl's cleanup is outstanding
			}
			// What the guest was doing goes into the error: Xen's view
			// of its events and vCPU, and (VIRQ_DEBUG) its kernel's
			// threads, on its console.
			ectx, ecancel := context.WithTimeout(context.Background(), time.Minute)
			state := g.EventState(ectx)
			ecancel()
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			derr := g.Destroy(dctx)
			msg := fmt.Sprintf("xenlab: guest %s (d%d) did not shut down: %v; destroyed it", g.Name, g.DomID, ctx.Err())
			if derr != nil {
				msg = fmt.Sprintf("xenlab: guest %s (d%d) did not shut down: %v; destroy failed too: %v", g.Name, g.DomID, ctx.Err(), derr)
			}
			return -1, fmt.Errorf("%s; logs: %s, %s, %s\nits state before:\n%s", msg, g.ConsoleLogPath(), g.XLLogPath(), g.lab.XenLogPath(), state)
		case <-g.lab.qemuDone:
			return -1, fmt.Errorf("xenlab: guest %s: QEMU exited before the guest shut down; see %s", g.Name, g.lab.XenLogPath())
		case <-t.C:
		}
	}
}

// Destroy destroys the domain if it still exists.
func (g *Guest) Destroy(ctx context.Context) error {
	_, err := g.lab.MustSucceed(ctx, fmt.Sprintf("xl domid %s >/dev/null 2>&1 || exit 0\nxl destroy %s", g.Name, g.Name))
	return err
}

// BaselineConfig is the Linux baseline guest: dom0's Debian kernel as a PV domU with a
// busybox initramfs carrying xen-netfront and xen-blkfront. ip (e.g. "10.0.0.2/24") is
// given to eth0 when nonzero and NICs is set to 1; script, when nonempty, runs as sh
// after boot, its output goes to the PV console followed by "XENLAB-EXIT <status>", and
// the guest powers off. Without a script the guest prints "XENLAB-IDLE" and stays up.
func (l *Lab) BaselineConfig(name, ip, script string, disks ...Disk) GuestConfig {
	c := GuestConfig{
		Name:      name,
		Type:      PV,
		Kernel:    l.art.Kernel,
		Ramdisk:   l.art.BaselineInitrd,
		MemoryMiB: 128,
		Disks:     disks,
	}
	args := []string{"console=hvc0", "quiet"}
	if ip != "" {
		c.NICs = 1
		args = append(args, "xenlab.ip="+ip)
	}
	if script != "" {
		args = append(args, "xenlab.run="+base64.StdEncoding.EncodeToString([]byte(script)))
	}
	c.Cmdline = strings.Join(args, " ")
	return c
}

// BaselineExitRE matches the baseline guest's final status line.
var BaselineExitRE = regexp.MustCompile(`^XENLAB-EXIT (\d+)`)

func readText(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// shellQuote quotes s for dom0's shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// EventState asks Xen for its view of the guest's event delivery (debug
// keys 'q' and 'e': each vCPU's upcall_pend and upcall_mask, and each of
// the domain's ports with its pending, masked and state fields) and
// returns those lines from Xen's console, after where its vCPUs are: xl
// vcpu-list's state and time, and xenctx's registers twice, a second
// apart (a halted guest waits for an event; a spinning one does not). It
// is for failure reports: it tells an event Xen holds for the guest
// (pending, maybe masked) from one never sent. Errors are in the text.
func (g *Guest) EventState(ctx context.Context) string {
	before := len(readText(g.lab.XenLogPath()))
	ctxOut, err := g.lab.MustSucceed(ctx, fmt.Sprintf(`xl vcpu-list %[1]d
for i in 1 2; do /usr/lib/xen-*/bin/xenctx %[1]d 0 2>&1 | head -n 12; sleep 1; done
xl debug-keys q && xl debug-keys e`, g.DomID))
	if err != nil {
		return fmt.Sprintf("xenlab: debug keys: %v", err)
	}
	// Xen prints the dump on its serial console, which reaches the log a
	// little later: wait until it stops growing.
	var log string
	for n, quiet := before, 0; quiet < 3; {
		select {
		case <-ctx.Done():
			quiet = 3
		case <-time.After(300 * time.Millisecond):
		}
		log = readText(g.lab.XenLogPath())
		if len(log) == n {
			quiet++
		} else {
			n, quiet = len(log), 0
		}
	}
	if before > len(log) {
		before = 0
	}
	return ctxOut + domainSections(log[before:], g.DomID)
}

// domainSections keeps the parts of a 'q' and 'e' debug-key dump that are
// about domain id, and the other domains' ports bound to it (their far
// ends: "d=ID"), each under its domain's heading.
func domainSections(dump string, id int) string {
	heads := []string{"General information for domain ", "VCPU information and callbacks for domain ",
		"Event channel information for domain "}
	var b strings.Builder
	keep, peer := false, ""
	for _, line := range strings.Split(strings.ReplaceAll(dump, "\r", ""), "\n") {
		_, text, _ := strings.Cut(line, ") ") // "(XEN) " prefix
		for _, h := range heads {
			if rest, ok := strings.CutPrefix(text, h); ok {
				keep = strings.TrimSuffix(strings.TrimSpace(rest), ":") == strconv.Itoa(id)
				peer = ""
				if !keep && h == heads[2] {
					peer = text
				}
			}
		}
		if strings.HasPrefix(text, "'") || strings.HasPrefix(text, "Sched") {
			keep, peer = false, "" // the next key's banner
		}
		switch {
		case keep:
			b.WriteString(text)
			b.WriteByte('\n')
		case peer != "" && strings.Contains(text, fmt.Sprintf(" d=%d ", id)):
			if !strings.HasPrefix(peer, "+") {
				b.WriteString(peer + " (ports bound to domain " + strconv.Itoa(id) + ")\n")
				peer = "+" + peer
			}
			b.WriteString(text)
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		return fmt.Sprintf("xenlab: no debug-key lines for domain %d in Xen's console", id)
	}
	return b.String()
}

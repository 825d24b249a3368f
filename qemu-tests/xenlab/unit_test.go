package xenlab

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCtlLine(t *testing.T) {
	tests := []struct {
		line string
		want ctlMsg
		ok   bool
	}{
		{"READY", ctlMsg{verb: "READY"}, true},
		{"FAIL mount 9p share", ctlMsg{verb: "FAIL", rest: "mount 9p share"}, true},
		{"OUT 3 aGVsbG8K", ctlMsg{verb: "OUT", id: 3, rest: "hello\n"}, true},
		{"OUT 4 ", ctlMsg{verb: "OUT", id: 4, rest: ""}, true},
		{"END 3 137", ctlMsg{verb: "END", id: 3, rest: "137"}, true},
		{"END x 0", ctlMsg{}, false},
		{"[  12.3] random kernel noise", ctlMsg{}, false},
	}
	for _, tt := range tests {
		got, ok := parseCtlLine(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseCtlLine(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
	if m, _ := parseCtlLine("OUT 1 !!notbase64"); !strings.Contains(m.rest, "undecodable") {
		t.Errorf("bad base64 gave %q, want an explanation", m.rest)
	}
	// What runLine sends decodes back to the script (dom0-init base64-decodes field 4).
	f := strings.Fields(runLine(9, 30, "echo 'a b'\nexit 3"))
	if f[0] != "RUN" || f[1] != "9" || f[2] != "30" || len(f) != 4 {
		t.Fatalf("runLine fields %q", f)
	}
	if m, _ := parseCtlLine("OUT 9 " + f[3]); m.rest != "echo 'a b'\nexit 3" {
		t.Errorf("script round trip %q", m.rest)
	}
}

func TestDomainLines(t *testing.T) {
	log := "(XEN) Xen version 4.17\r\n(d1) hello\r\n(XEN) d1v0 something\n(d12) other\n(d1) world\n"
	if diff := cmp.Diff([]string{"hello", "world"}, domainLines(log, 1)); diff != "" {
		t.Errorf("domainLines(1) (-want +got):\n%s", diff)
	}
	if got := domainLines(log, 2); len(got) != 0 {
		t.Errorf("domainLines(2) = %q, want none", got)
	}
}

func TestXLConfig(t *testing.T) {
	c := GuestConfig{
		Name: "fw", Type: PVH, Kernel: "/host/fw.unik", Cmdline: "debug", MemoryMiB: 32, NICs: 2,
		Disks: []Disk{{HostPath: "/host/d.img", Vdev: "xvdb", ReadOnly: true}},
		Extra: []string{`cpus = "0"`},
	}
	got, err := c.XLConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := `name = "fw"
type = "pvh"
kernel = "/lab/images/fw.kernel"
extra = "debug"
memory = 32
vcpus = 1
tsc_mode = "native"
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
vif = [ 'bridge=xenbr0,script=vif-lab,mac=` + c.MAC(0) + `', 'bridge=xenbr0,script=vif-lab,mac=` + c.MAC(1) + `' ]
disk = [ 'format=raw,vdev=xvdb,access=ro,script=block-lab,target=/lab/images/fw.disk-xvdb' ]
cpus = "0"
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("XLConfig (-want +got):\n%s", diff)
	}
	if c.MAC(0) == c.MAC(1) || c.MAC(0) == (GuestConfig{Name: "other"}).MAC(0) {
		t.Errorf("MACs collide: %s %s %s", c.MAC(0), c.MAC(1), (GuestConfig{Name: "other"}).MAC(0))
	}
	for _, bad := range []GuestConfig{
		{Name: "a b", Type: PVH, Kernel: "k"},
		{Name: "ok", Type: "hvm", Kernel: "k"},
		{Name: "ok", Type: PV},
		{Name: "ok", Type: PV, Kernel: "k", Disks: []Disk{{HostPath: "x"}}},
	} {
		if _, err := bad.XLConfig(); err == nil {
			t.Errorf("XLConfig(%+v) accepted a bad config", bad)
		}
	}
}

func TestShutdownReasonString(t *testing.T) {
	if Poweroff.String() != "poweroff" || Crash.String() != "crash" || ShutdownReason(9).String() != "reason 9" {
		t.Errorf("names: %s %s %s", Poweroff, Crash, ShutdownReason(9))
	}
}

func TestParseQEMUVersion(t *testing.T) {
	for _, tt := range []struct {
		out          string
		major, minor int
		ok           bool
	}{
		{"QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright", 10, 0, true},
		{"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n", 7, 2, true},
		{"qemu-system-x86_64: unknown option", 0, 0, false},
		{"QEMU emulator version x.y", 0, 0, false},
	} {
		major, minor, err := parseQEMUVersion(tt.out)
		if (err == nil) != tt.ok || major != tt.major || minor != tt.minor {
			t.Errorf("parseQEMUVersion(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.out, major, minor, err, tt.major, tt.minor, tt.ok)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.12":      `'10.0.0.12'`,
		"":               `''`,
		"it's":           `'it'\''s'`,
		"$(reboot) `x`;": "'$(reboot) `x`;'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestDomainSections keeps one domain's parts of a 'q' and 'e' debug-key
// dump (the layout Xen 4.17 prints) and drops the other domains' and the
// key banners.
func TestDomainSections(t *testing.T) {
	dump := `(XEN) 'q' pressed -> dumping domain info (now = 123)
(XEN) General information for domain 0:
(XEN)     refcnt=3 dying=0 pause_count=0
(XEN) General information for domain 7:
(XEN)     refcnt=3 dying=0 pause_count=0
(XEN)     nr_pages=16384 xenheap_pages=4 dirty_cpus={} max_pages=16640
(XEN) Sched=credit2
(XEN) VCPU information and callbacks for domain 0:
(XEN)   UNIT0 affinities: hard={0-1} soft={0-1}
(XEN) VCPU information and callbacks for domain 7:
(XEN)   UNIT0 affinities: hard={0-1} soft={0-1}
(XEN)     VCPU0: CPU1 [has=F] poll=0 upcall_pend=01 upcall_mask=00
(XEN) 'e' pressed -> dumping event-channel info
(XEN) Event channel information for domain 0:
(XEN) Polling vCPUs: {}
(XEN)     port [p/m/s]
(XEN)        1 [0/0/1]: s=5 n=0 x=0 v=0
(XEN)       33 [0/0/1]: s=3 n=0 x=0 d=7 p=1
(XEN)       34 [1/0/1]: s=3 n=0 x=0 d=8 p=1
(XEN) Event channel information for domain 7:
(XEN) Polling vCPUs: {}
(XEN)     port [p/m/s]
(XEN)        1 [1/0/1]: s=3 n=0 x=0 d=0 p=33
(XEN)        4 [1/1/1]: s=3 n=0 x=0 d=0 p=35
(XEN) Event channel information for domain 8:
(XEN)        1 [0/0/1]: s=3 n=0 x=0 d=0 p=36
`
	want := `General information for domain 7:
    refcnt=3 dying=0 pause_count=0
    nr_pages=16384 xenheap_pages=4 dirty_cpus={} max_pages=16640
VCPU information and callbacks for domain 7:
  UNIT0 affinities: hard={0-1} soft={0-1}
    VCPU0: CPU1 [has=F] poll=0 upcall_pend=01 upcall_mask=00
Event channel information for domain 0: (ports bound to domain 7)
      33 [0/0/1]: s=3 n=0 x=0 d=7 p=1
Event channel information for domain 7:
Polling vCPUs: {}
    port [p/m/s]
       1 [1/0/1]: s=3 n=0 x=0 d=0 p=33
       4 [1/1/1]: s=3 n=0 x=0 d=0 p=35
`
	if diff := cmp.Diff(want, domainSections(dump, 7)); diff != "" {
		t.Errorf("domainSections (-want +got):\n%s", diff)
	}
	if got := domainSections(dump, 9); !strings.Contains(got, "no debug-key lines for domain 9") {
		t.Errorf("domainSections for a domain not in the dump = %q", got)
	}
}

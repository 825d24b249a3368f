package xlconfig

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRender(t *testing.T) {
	got, err := Config{
		Name: `odd "name"`, Kernel: "/images/fw.unik", Cmdline: `fw "a b"`,
		VIFs: []string{"bridge=xenbr0, mac=00:16:3e:00:00:01"}, Disks: []string{"/dev/loop0", "format=qcow2, vdev=xvdb, target=/x.qcow2"},
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := `# xl config for a unikgo PVH guest (written by unikbuild)
name = "odd \"name\""
type = "pvh"
kernel = "/images/fw.unik"
cmdline = "fw \"a b\""
memory = 128
vcpus = 1
vif = [ "bridge=xenbr0, mac=00:16:3e:00:00:01" ]
disk = [ "format=raw, vdev=xvda, access=rw, target=/dev/loop0", "format=qcow2, vdev=xvdb, target=/x.qcow2" ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

func TestRenderRefuses(t *testing.T) {
	for _, c := range []Config{
		{Kernel: "k"},
		{Name: "n"},
		{Name: "n", Kernel: "k", MemoryMiB: -1},
		{Name: "n", Kernel: "k", Disks: make([]string, maxDisks+1)},
	} {
		if _, err := c.Render(); err == nil {
			t.Errorf("Render(%+v) succeeded, want an error", c)
		}
	}
}

func TestRelativeKernelBecomesAbsolute(t *testing.T) {
	got, err := Config{Name: "n", Kernel: "fw.unik"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, `kernel = "fw.unik"`) || !strings.Contains(got, `/fw.unik"`) {
		t.Errorf("kernel path not made absolute:\n%s", got)
	}
}

func TestParseMemory(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"128", 128}, {"128M", 128}, {"256m", 256}, {"1G", 1024}, {"2g", 2048},
		{"", 0}, {"M", 0}, {"-5", 0}, {"1.5G", 0}, {"12K", 0},
	} {
		got, err := ParseMemory(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("ParseMemory(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestDiskSpec(t *testing.T) {
	for _, tt := range []struct {
		in   string
		i    int
		want string
	}{
		{"/dev/loop0", 0, "format=raw, vdev=xvda, access=rw, target=/dev/loop0"},
		{"disk.img", 2, "format=raw, vdev=xvdc, access=rw, target=disk.img"},
		{"phy:/dev/loop1,xvdb,w", 1, "phy:/dev/loop1,xvdb,w"},
		{"vdev=xvdz, target=/x", 0, "vdev=xvdz, target=/x"},
	} {
		if got := DiskSpec(tt.in, tt.i); got != tt.want {
			t.Errorf("DiskSpec(%q, %d) = %q, want %q", tt.in, tt.i, got, tt.want)
		}
	}
}

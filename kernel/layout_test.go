package kernel

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/unikgo/unikgo/kernel/serve"
	"golang.org/x/sys/unix"
)

// TestTrapFrameLayout pins TrapFrame to the push order of trapCommon and
// the frame the CPU pushes (entry_amd64.s).
func TestTrapFrameLayout(t *testing.T) {
	var f TrapFrame
	got := []uintptr{unsafe.Sizeof(f), unsafe.Offsetof(f.R15), unsafe.Offsetof(f.RAX), unsafe.Offsetof(f.Vector),
		unsafe.Offsetof(f.ErrCode), unsafe.Offsetof(f.RIP), unsafe.Offsetof(f.CS), unsafe.Offsetof(f.RFLAGS),
		unsafe.Offsetof(f.RSP), unsafe.Offsetof(f.SS)}
	want := []uintptr{trapFrameSize, 0, 112, 120, 128, 136, 144, 152, 160, 168}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TrapFrame layout (-want +got):\n%s", diff)
	}
}

// TestStatLayout pins the struct stat fields statBuiltin writes.
func TestStatLayout(t *testing.T) {
	var st unix.Stat_t
	got := []uintptr{unsafe.Sizeof(st), unsafe.Offsetof(st.Nlink), unsafe.Offsetof(st.Mode), unsafe.Offsetof(st.Blksize)}
	want := []uintptr{statSize, statNlink, statMode, statBlksize}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("struct stat layout (-want +got):\n%s", diff)
	}
}

// TestPercpuLayout pins the fields the entry code reads through GS
// (the PC_* offsets in entry_amd64.s).
func TestPercpuLayout(t *testing.T) {
	var c percpu
	got := []uintptr{unsafe.Offsetof(c.kstack), unsafe.Offsetof(c.scratch), unsafe.Offsetof(c.kfs), unsafe.Offsetof(c.ufs),
		unsafe.Offsetof(c.fx), unsafe.Offsetof(c.idleTop), unsafe.Offsetof(c.idling), unsafe.Offsetof(c.idleReq), unsafe.Offsetof(c.cr2)}
	want := []uintptr{8, 16, 24, 32, 40, 48, 56, 64, 72}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("percpu layout (-want +got):\n%s", diff)
	}
	if unsafe.Sizeof(c.tss) != 104 {
		t.Errorf("TSS is %d bytes, want 104", unsafe.Sizeof(c.tss))
	}
}

// TestSigframeLayout pins the signal frame to Linux x86-64's struct
// rt_sigframe, ucontext and sigcontext, which the runtime's sigtramp and
// sigctxt read (runtime/defs_linux_amd64.go).
func TestSigframeLayout(t *testing.T) {
	got := []int{frPretcode, frUC, ucStack, ucMcontext, ucSigmask, ucSize, frInfo, siginfoSize, frameSize,
		scR8, scRDI, scRSI, scRBP, scRBX, scRDX, scRAX, scRCX, scRSP, scRIP, scEFLAGS, scCSGSFS, scErr, scTrapno,
		scOldmask, scCR2, scFPState}
	want := []int{0, 8, 16, 40, 296, 304, 312, 128, 440,
		0, 64, 72, 80, 88, 96, 104, 112, 120, 128, 136, 144, 152, 160, 168, 176, 184}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("signal frame layout (-want +got):\n%s", diff)
	}
	var a sigaction
	if unsafe.Sizeof(a) != 32 {
		t.Errorf("kernel_sigaction is %d bytes, want 32", unsafe.Sizeof(a))
	}
}

func TestUnixSeconds(t *testing.T) {
	tests := []struct {
		y, m, d, hh, mm, ss uint64
		want                uint64
	}{
		{1970, 1, 1, 0, 0, 0, 0},
		{2000, 3, 1, 0, 0, 0, 951868800},
		{2026, 11, 22, 6, 6, 26, 1795327586},
		{1969, 12, 31, 0, 0, 0, 0}, // before the epoch: 0 (no RTC)
		{2026, 13, 1, 0, 0, 0, 0},  // bad month
	}
	for _, tt := range tests {
		if got := unixSeconds(tt.y, tt.m, tt.d, tt.hh, tt.mm, tt.ss); got != tt.want {
			t.Errorf("unixSeconds(%d-%d-%d %d:%d:%d) = %d, want %d", tt.y, tt.m, tt.d, tt.hh, tt.mm, tt.ss, got, tt.want)
		}
	}
}

func TestVMAs(t *testing.T) {
	nVMAs = 0
	defer func() { nVMAs = 0 }()
	const g = userBase
	insertVMA(g, g+0x3000, protRead|protWrite)
	insertVMA(g+0x3000, g+0x5000, protRead|protWrite) // merges
	insertVMA(g+0x8000, g+0x9000, 0)
	removeRange(g+0x1000, g+0x2000) // splits
	got := append([]vma(nil), vmas[:nVMAs]...)
	want := []vma{{g, g + 0x1000, 3}, {g + 0x2000, g + 0x5000, 3}, {g + 0x8000, g + 0x9000, 0}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(vma{})); diff != "" {
		t.Errorf("VMAs (-want +got):\n%s", diff)
	}
	for va, want := range map[uintptr]int{g: 0, g + 0x1800: -1, g + 0x4fff: 1, g + 0x8000: 2, g + 0x9000: -1} {
		if got := findVMA(va); got != want {
			t.Errorf("findVMA(%#x) = %d, want %d", va, got, want)
		}
	}
	if rangeFree(g+0x4000, g+0x6000) || !rangeFree(g+0x5000, g+0x8000) {
		t.Error("rangeFree wrong")
	}
}

// TestRxRingLayout: the kernel's offsets in a receive ring are those of
// kernel/serve's RxRing.
func TestRxRingLayout(t *testing.T) {
	var r serve.RxRing
	got := []uintptr{unsafe.Offsetof(r.Prod), unsafe.Offsetof(r.Cons), unsafe.Offsetof(r.Want), unsafe.Offsetof(r.Data), serve.RxRingSize, unsafe.Sizeof(r)}
	want := []uintptr{rxProd, rxCons, rxWant, rxData, rxSize, rxRingLen}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RxRing offsets (-kernel +serve):\n%s", diff)
	}
}

// TestStrayVectors: the vectors strayInterrupt (entry_amd64.s) tells
// apart are the kernel's, and so are the ones unikgo.straytest raises and
// the flag trapCommon sets for lostFrame.
func TestStrayVectors(t *testing.T) {
	src, err := os.ReadFile("entry_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("#define SPURIOUS_VECTOR $%#x\n", spuriousVector),
		fmt.Sprintf("#define XEN_UPCALL_VECTOR $%#x\n", xenUpcallVector),
		fmt.Sprintf("#define FRAME_LOST $%#x\n", vecFrameLost),
		fmt.Sprintf("BYTE\t$0xcd; BYTE $%#x\n", timerVector),
		fmt.Sprintf("BYTE\t$0xcd; BYTE $%#x\n", xenUpcallVector),
	} {
		if !strings.Contains(string(src), want) {
			t.Errorf("entry_amd64.s lacks %q", want)
		}
	}
}

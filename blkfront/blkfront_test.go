package blkfront

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/blockdev"
)

func TestConnectReadWrite(t *testing.T) {
	r := newRig(t, backendOpts{})
	want := r.be.fill(1)
	d := r.open()
	if got := d.Size(); got != int64(len(want)) {
		t.Fatalf("Size = %d, want %d", got, len(want))
	}
	got := make([]byte, len(want))
	if n, err := d.ReadAt(got, 0); err != nil || n != len(got) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read data differs from the disk")
	}
	data := bytes.Repeat([]byte("blkfront"), 4096/8*3)
	if n, err := d.WriteAt(data, 8192); err != nil || n != len(data) {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	copy(want[8192:], data)
	if !bytes.Equal(r.be.diskCopy(), want) {
		t.Fatal("disk differs after write")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := d.ReadAt(got, 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Errorf("ReadAt after Close = %v, want ErrClosed", err)
	}
	if diff := cmp.Diff(0, r.grants.liveCount()); diff != "" {
		t.Errorf("grants left after Close (-want +got):\n%s", diff)
	}
	if n := r.mem.Live(); n != 0 {
		t.Errorf("%d DMA regions left after Close", n)
	}
}

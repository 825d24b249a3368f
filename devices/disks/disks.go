// Package disks makes the machine's disks ordinary files: imported for its
// side effect,
//
//	import _ "github.com/unikgo/unikgo/devices/disks"
//
// it finds the disks when the program starts, before main, and serves
// them as Linux block device files through blockdev/devfile: on Xen the
// vbds the toolstack gave the domain as /dev/xvda, /dev/xvdb... (blkfront),
// and under QEMU virtio-blk disks as /dev/vda, /dev/vdb... A disk that
// cannot be brought up is reported on stderr in one line and left out.
// Outside a unikgo image (go test on the host) it does nothing.
package disks

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/unikgo/unikgo/blkfront"
	"github.com/unikgo/unikgo/blockdev/devfile"
	"github.com/unikgo/unikgo/boot"
	"github.com/unikgo/unikgo/devices/xenglue"
	"github.com/unikgo/unikgo/virtio/blk"
	"github.com/unikgo/unikgo/xenpv/domain"
	"github.com/unikgo/unikgo/xenpv/gnttab"
	"github.com/unikgo/unikgo/xenpv/xenstore/xenbus"
)

// probeTimeout bounds bringing the disks up at start.
const probeTimeout = 30 * time.Second

func init() {
	if !boot.Booted() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var ds []devfile.Disk
	if domain.OnXen() {
		ds = xenDisks(ctx)
	} else {
		ds = virtioDisks(ctx)
	}
	if len(ds) == 0 {
		return
	}
	if err := devfile.Serve(context.Background(), ds, func(err error) {
		fmt.Fprintf(os.Stderr, "disks: serving stopped: %v\n", err)
	}); err != nil {
		fmt.Fprintf(os.Stderr, "disks: %v; disks unavailable\n", err)
	}
}

func xenDisks(ctx context.Context) []devfile.Disk {
	d, err := xenglue.Open()
	if err != nil {
		fmt.Fprintf(os.Stderr, "disks: %v; Xen disks unavailable\n", err)
		return nil
	}
	ids, err := xenbus.Devices(ctx, d.Store, "vbd")
	if err != nil {
		fmt.Fprintf(os.Stderr, "disks: listing device/vbd: %v; Xen disks unavailable\n", err)
		return nil
	}
	var ds []devfile.Disk
	for _, id := range ids {
		name, rdev, err := XenName(id)
		if err != nil {
			fmt.Fprintf(os.Stderr, "disks: device/vbd/%s: %v; left out\n", id, err)
			continue
		}
		dev, err := blkfront.New(ctx, blkfront.Config{
			Store: d.Store, Grants: d.Grants, Memory: d.Memory, Device: id,
			Events: events{d},
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "disks: %s (device/vbd/%s): %v; left out\n", name, id, err)
			continue
		}
		ds = append(ds, devfile.Disk{Path: "/dev/" + name, Dev: dev, Rdev: rdev})
	}
	return ds
}

// virtioDisks are the virtio-blk PCI disks, named vda, vdb... in PCI
// order as Linux names them.
func virtioDisks(ctx context.Context) []devfile.Disk {
	devs, err := blk.Probe(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "disks: virtio-blk: %v\n", err)
	}
	var ds []devfile.Disk
	for i, d := range devs {
		// virtio-blk's major is dynamic on Linux; 253 is the usual one.
		ds = append(ds, devfile.Disk{Path: "/dev/vd" + letters(uint64(i)), Dev: d, Rdev: 253<<8 | uint64(i%16)*16})
	}
	return ds
}

type events struct{ d *xenglue.Domain }

func (e events) AllocUnbound(remote gnttab.DomID) (blkfront.EventChannel, error) {
	return e.d.AllocUnbound(remote)
}

// XenName turns a vbd id (its virtual-device number, as the toolstack
// writes it under device/vbd) into the Linux name and device number a Xen
// guest gives it: 51712 is xvda (202:0), 51728 xvdb (202:16); the
// extended form (1<<28 | disk<<8 | partition) names disks past xvdp.
// Partitions are not disks of their own here and are refused.
func XenName(id string) (string, uint64, error) {
	v, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("vbd id %q is not a virtual-device number", id)
	}
	var disk, part uint64
	switch {
	case v&(1<<28) != 0:
		disk, part = v>>8&0xfffff, v&0xff
	case v>>8 == 202:
		disk, part = v&0xff>>4, v&0xf
	default:
		// IDE and SCSI numbers (hda, sda): Linux guests still call the
		// PV disk xvd*, after the disk index.
		return "", 0, fmt.Errorf("vbd id %d is not an xvd number (major %d)", v, v>>8)
	}
	if part != 0 {
		return "", 0, fmt.Errorf("vbd id %d is partition %d of a disk; only whole disks are served", v, part)
	}
	rdev := uint64(0) // past xvdp Linux's numbers are dynamic
	if disk < 16 {
		rdev = 202<<8 | disk*16
	}
	return "xvd" + letters(disk), rdev, nil
}

// letters is the disk suffix: a..z, then aa, ab... as Linux's
// xlbd naming.
func letters(n uint64) string {
	s := ""
	for {
		s = string(rune('a'+n%26)) + s
		if n < 26 {
			return s
		}
		n = n/26 - 1
	}
}

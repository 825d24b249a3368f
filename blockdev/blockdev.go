// Package blockdev is the contract between disk drivers (blkfront,
// virtio-blk) and their users, such as the kernel's /dev/xvda files. It
// extends io.ReaderAt and io.WriterAt with the two things a disk adds:
// durability (Flush) and a fixed size.
package blockdev

import (
	"errors"
	"io"
)

// Device is a disk. Offsets and lengths need not be sector aligned; the
// driver does the read-modify-write a partial sector needs. Many calls may
// be in flight at once from different goroutines.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Flush returns once every write that completed before it was called
	// is on stable storage.
	Flush() error
	// Size is the capacity in bytes.
	Size() int64
	// SectorSize is the device's logical sector size in bytes (512 or 4096).
	SectorSize() int
	// ReadOnly reports whether writes are refused (with ErrReadOnly).
	ReadOnly() bool
	// Close stops the device after in-flight requests finish.
	Close() error
}

var (
	// ErrReadOnly is returned by WriteAt on a read-only disk.
	ErrReadOnly = errors.New("blockdev: the disk is read-only")
	// ErrOutOfRange is returned for an access past the end of the disk.
	ErrOutOfRange = errors.New("blockdev: access past the end of the disk")
	// ErrClosed is returned after Close or once the backend is gone for good.
	ErrClosed = errors.New("blockdev: the disk is closed")
)

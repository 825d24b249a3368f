package blkfront

import (
	"fmt"
	"strconv"
)

// Backend keys (io/blkif.h, "Backend XenBus Nodes"). Only sectors, info
// and sector-size are required, as in Linux blkfront's blkfront_connect;
// every other key has the default io/blkif.h gives it.
const (
	keySectors            = "sectors"
	keySectorSize         = "sector-size"
	keyPhysicalSectorSize = "physical-sector-size"
	keyInfo               = "info"
	keyMode               = "mode"
	keyFlushCache         = "feature-flush-cache"
	keyBarrier            = "feature-barrier"
	keyDiscard            = "feature-discard"
	keyDiscardGranularity = "discard-granularity"
	keyDiscardAlignment   = "discard-alignment"
	keyDiscardSecure      = "discard-secure"
	keyMaxIndirect        = "feature-max-indirect-segments"
	keyMaxRingPageOrder   = "max-ring-page-order"
)

// backendKeys is every backend key the driver reads at connect time.
var backendKeys = []string{
	keySectors, keySectorSize, keyPhysicalSectorSize, keyInfo, keyMode,
	keyFlushCache, keyBarrier, keyDiscard, keyDiscardGranularity,
	keyDiscardAlignment, keyDiscardSecure, keyMaxIndirect,
}

// VDISK_* bits of the backend's "info" key (io/blkif.h).
const (
	InfoCDROM     = 1
	InfoRemovable = 2
	InfoReadOnly  = 4
)

// FlushMethod is how the driver makes completed writes durable.
type FlushMethod uint8

// Flush methods, in the order of preference of Linux blkfront
// (blkfront_gather_backend_features): a cache flush if offered, else a
// write barrier, else none (the disk has no volatile cache to flush).
const (
	FlushNone FlushMethod = iota
	FlushDiskCache
	FlushBarrier
)

func (f FlushMethod) String() string {
	switch f {
	case FlushNone:
		return "none"
	case FlushDiskCache:
		return "flush-diskcache"
	case FlushBarrier:
		return "write-barrier"
	}
	return fmt.Sprintf("FlushMethod(%d)", uint8(f))
}

// maxSectors bounds "sectors" so that the size in bytes fits an int64.
const maxSectors = (1 << (63 - SectorShift)) - 1

// Info is the disk as the backend describes it at connect time.
type Info struct {
	// Sectors is the capacity in 512-byte units (io/blkif.h's "sectors",
	// which Linux blkback and blkfront always count in 512 bytes), rounded
	// down to a whole number of logical sectors.
	Sectors uint64
	// SectorSize is the logical sector size: a power of two from 512 to
	// 4096. Accesses are done in whole logical sectors.
	SectorSize int
	// PhysicalSectorSize is a power-of-two multiple of SectorSize.
	PhysicalSectorSize int
	// Info is the raw "info" bitmap (InfoCDROM, InfoRemovable,
	// InfoReadOnly).
	Info uint32
	// ReadOnly is set by InfoReadOnly or by mode "r".
	ReadOnly bool
	// Flush is the flush method the backend offered.
	Flush FlushMethod
	// Discard is feature-discard; the granularity (bytes, default the
	// sector size) and alignment (bytes) describe the extents.
	Discard            bool
	DiscardGranularity uint32
	DiscardAlignment   uint32
	DiscardSecure      bool
	// MaxIndirectSegments is feature-max-indirect-segments, 0 if absent.
	MaxIndirectSegments uint32
}

// Size is the capacity in bytes.
func (i *Info) Size() int64 { return int64(i.Sectors) << SectorShift }

// parseUint parses a backend value as an unsigned decimal number of at
// most bitSize bits: what Linux's xenbus_scanf("%u") accepts, minus signs
// and spaces.
func parseUint(key, v string, bitSize int) (uint64, error) {
	if v == "" || len(v) > 20 {
		return 0, fmt.Errorf("backend key %s: %q is not a number", key, trunc(v))
	}
	n, err := strconv.ParseUint(v, 10, bitSize)
	if err != nil {
		return 0, fmt.Errorf("backend key %s: %q is not a %d-bit unsigned number", key, trunc(v), bitSize)
	}
	return n, nil
}

func trunc(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

func isPow2(n uint64) bool { return n != 0 && n&(n-1) == 0 }

// parseInfo turns the backend's keys (missing ones absent from kv) into
// an Info. Every value was written by another domain: anything malformed
// or out of range is an error naming the key.
func parseInfo(kv map[string]string) (Info, error) {
	var info Info
	num := func(key string, bitSize int, def uint64) (uint64, error) {
		v, ok := kv[key]
		if !ok {
			return def, nil
		}
		return parseUint(key, v, bitSize)
	}
	required := func(key string, bitSize int) (uint64, error) {
		if _, ok := kv[key]; !ok {
			return 0, fmt.Errorf("backend key %s is missing; the backend must write it before Connected", key)
		}
		return num(key, bitSize, 0)
	}
	flag := func(key string) (bool, error) {
		n, err := num(key, 32, 0)
		return n != 0, err
	}

	ss, err := required(keySectorSize, 32)
	if err != nil {
		return info, err
	}
	if !isPow2(ss) || ss < SectorUnit || ss > PageSize {
		return info, fmt.Errorf("backend key %s: %d is not a power of two from %d to %d", keySectorSize, ss, SectorUnit, PageSize)
	}
	info.SectorSize = int(ss)
	pss, err := num(keyPhysicalSectorSize, 32, ss)
	if err != nil {
		return info, err
	}
	if !isPow2(pss) || pss < ss {
		return info, fmt.Errorf("backend key %s: %d is not a power-of-two multiple of sector-size %d", keyPhysicalSectorSize, pss, ss)
	}
	info.PhysicalSectorSize = int(pss)

	sectors, err := required(keySectors, 64)
	if err != nil {
		return info, err
	}
	if sectors > maxSectors {
		return info, fmt.Errorf("backend key %s: %d sectors of 512 bytes is larger than any disk (at most %d)", keySectors, sectors, uint64(maxSectors))
	}
	// A tail smaller than a logical sector cannot be addressed.
	info.Sectors = sectors &^ (ss/SectorUnit - 1)

	in, err := required(keyInfo, 32)
	if err != nil {
		return info, err
	}
	info.Info = uint32(in)
	info.ReadOnly = in&InfoReadOnly != 0
	if mode, ok := kv[keyMode]; ok {
		// The toolstack writes "r" or "w" (xend also wrote "w!").
		switch {
		case len(mode) > 0 && mode[0] == 'r':
			info.ReadOnly = true
		case len(mode) > 0 && mode[0] == 'w':
		default:
			return info, fmt.Errorf("backend key %s: %q is neither r nor w", keyMode, trunc(mode))
		}
	}

	flush, err := flag(keyFlushCache)
	if err != nil {
		return info, err
	}
	barrier, err := flag(keyBarrier)
	if err != nil {
		return info, err
	}
	switch {
	case flush:
		info.Flush = FlushDiskCache
	case barrier:
		info.Flush = FlushBarrier
	}

	if info.Discard, err = flag(keyDiscard); err != nil {
		return info, err
	}
	if info.Discard {
		g, err := num(keyDiscardGranularity, 32, ss)
		if err != nil {
			return info, err
		}
		a, err := num(keyDiscardAlignment, 32, 0)
		if err != nil {
			return info, err
		}
		if g == 0 {
			g = ss
		}
		if g%ss != 0 || a%ss != 0 {
			// Linux blkfront trusts these; a discard rounded to nonsense
			// would miss, so turn the feature off instead of failing the disk.
			info.Discard = false
		}
		info.DiscardGranularity, info.DiscardAlignment = uint32(g), uint32(a)
		if info.DiscardSecure, err = flag(keyDiscardSecure); err != nil {
			return info, err
		}
	}

	ind, err := num(keyMaxIndirect, 32, 0)
	if err != nil {
		return info, err
	}
	info.MaxIndirectSegments = uint32(ind)
	return info, nil
}

// parseRingPageOrder reads max-ring-page-order (default 0) and picks the
// order to use: the smaller of the backend's and ours, as Linux blkfront's
// talk_to_blkback does.
func parseRingPageOrder(v string, present bool, ours int) (int, error) {
	if !present {
		return 0, nil
	}
	n, err := parseUint(keyMaxRingPageOrder, v, 32)
	if err != nil {
		return 0, err
	}
	return min(int(min(n, 64)), ours), nil
}

// segmentsPerRequest picks how many data segments one request may carry:
// MaxSegments without indirect descriptors, else the backend's maximum
// capped at ours. As Linux blkfront does (blkfront_setup_indirect),
// indirect requests are used only when they carry more than a direct one.
func segmentsPerRequest(backendMax uint32, ours int) (segs int, indirect bool) {
	n := min(int(min(backendMax, MaxIndirectSegments)), ours)
	if n <= MaxSegments {
		return MaxSegments, false
	}
	return n, true
}

// indirectPages is how many indirect pages segs segments need.
func indirectPages(segs int) int {
	return (segs + SegmentsPerIndirectPage - 1) / SegmentsPerIndirectPage
}

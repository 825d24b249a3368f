package blkfront

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func baseKeys() map[string]string {
	return map[string]string{"sectors": "2048", "sector-size": "512", "info": "0"}
}

func with(kv map[string]string, more ...string) map[string]string {
	out := map[string]string{}
	for k, v := range kv {
		out[k] = v
	}
	for i := 0; i+1 < len(more); i += 2 {
		if more[i+1] == "<absent>" {
			delete(out, more[i])
			continue
		}
		out[more[i]] = more[i+1]
	}
	return out
}

func TestParseInfo(t *testing.T) {
	plain := Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512}
	tests := []struct {
		name string
		kv   map[string]string
		want Info
	}{
		{"minimal", baseKeys(), plain},
		{"4k logical", with(baseKeys(), "sector-size", "4096", "sectors", "2050"),
			Info{Sectors: 2048, SectorSize: 4096, PhysicalSectorSize: 4096}},
		{"physical 4k", with(baseKeys(), "physical-sector-size", "4096"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 4096}},
		{"info readonly", with(baseKeys(), "info", "4"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, Info: 4, ReadOnly: true}},
		{"cdrom removable", with(baseKeys(), "info", "3"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, Info: 3}},
		{"mode r", with(baseKeys(), "mode", "r"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, ReadOnly: true}},
		{"mode w", with(baseKeys(), "mode", "w"), plain},
		{"flush", with(baseKeys(), "feature-flush-cache", "1", "feature-barrier", "1"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushDiskCache}},
		{"barrier only", with(baseKeys(), "feature-flush-cache", "0", "feature-barrier", "1"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, Flush: FlushBarrier}},
		{"discard defaults", with(baseKeys(), "feature-discard", "1"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, Discard: true, DiscardGranularity: 512}},
		{"discard keys", with(baseKeys(), "feature-discard", "1", "discard-granularity", "4096", "discard-alignment", "1024", "discard-secure", "1"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, Discard: true, DiscardGranularity: 4096, DiscardAlignment: 1024, DiscardSecure: true}},
		{"discard granularity not whole sectors", with(baseKeys(), "feature-discard", "1", "discard-granularity", "700"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, DiscardGranularity: 700}},
		{"indirect", with(baseKeys(), "feature-max-indirect-segments", "256"),
			Info{Sectors: 2048, SectorSize: 512, PhysicalSectorSize: 512, MaxIndirectSegments: 256}},
		{"empty cdrom", with(baseKeys(), "sectors", "0", "info", "1"),
			Info{SectorSize: 512, PhysicalSectorSize: 512, Info: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseInfo(tc.kv)
			if err != nil {
				t.Fatalf("parseInfo: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Info (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseInfoErrors(t *testing.T) {
	tests := []struct {
		name string
		kv   map[string]string
		key  string // the error must name it
	}{
		{"no sectors", with(baseKeys(), "sectors", "<absent>"), "sectors"},
		{"no sector-size", with(baseKeys(), "sector-size", "<absent>"), "sector-size"},
		{"no info", with(baseKeys(), "info", "<absent>"), "info"},
		{"sectors text", with(baseKeys(), "sectors", "lots"), "sectors"},
		{"sectors negative", with(baseKeys(), "sectors", "-1"), "sectors"},
		{"sectors overflow", with(baseKeys(), "sectors", "18446744073709551616"), "sectors"},
		{"sectors too big for int64 bytes", with(baseKeys(), "sectors", "18014398509481984"), "sectors"},
		{"sector-size 0", with(baseKeys(), "sector-size", "0"), "sector-size"},
		{"sector-size 1000", with(baseKeys(), "sector-size", "1000"), "sector-size"},
		{"sector-size 256", with(baseKeys(), "sector-size", "256"), "sector-size"},
		{"sector-size 8192", with(baseKeys(), "sector-size", "8192"), "sector-size"},
		{"physical smaller", with(baseKeys(), "sector-size", "4096", "physical-sector-size", "512"), "physical-sector-size"},
		{"physical not pow2", with(baseKeys(), "physical-sector-size", "1536"), "physical-sector-size"},
		{"info text", with(baseKeys(), "info", "ro"), "info"},
		{"info too wide", with(baseKeys(), "info", "4294967296"), "info"},
		{"mode x", with(baseKeys(), "mode", "x"), "mode"},
		{"mode empty", with(baseKeys(), "mode", ""), "mode"},
		{"flush text", with(baseKeys(), "feature-flush-cache", "yes"), "feature-flush-cache"},
		{"barrier space", with(baseKeys(), "feature-barrier", " 1"), "feature-barrier"},
		{"discard text", with(baseKeys(), "feature-discard", "true"), "feature-discard"},
		{"granularity text", with(baseKeys(), "feature-discard", "1", "discard-granularity", "x"), "discard-granularity"},
		{"indirect negative", with(baseKeys(), "feature-max-indirect-segments", "-32"), "feature-max-indirect-segments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseInfo(tc.kv)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q does not name key %s", err, tc.key)
			}
		})
	}
}

func TestRingOrderAndSegments(t *testing.T) {
	orders := []struct {
		v       string
		present bool
		ours    int
		want    int
		wantErr bool
	}{
		{"", false, 4, 0, false},
		{"0", true, 4, 0, false},
		{"2", true, 4, 2, false},
		{"9", true, 4, 4, false},
		{"99999999999", true, 4, 0, true},
		{"x", true, 4, 0, true},
		{"3", true, 0, 0, false},
	}
	for _, tc := range orders {
		got, err := parseRingPageOrder(tc.v, tc.present, tc.ours)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseRingPageOrder(%q, %v, %d) = %d, %v; want %d, error %v", tc.v, tc.present, tc.ours, got, err, tc.want, tc.wantErr)
		}
	}
	segs := []struct {
		backend  uint32
		ours     int
		want     int
		indirect bool
		pages    int
	}{
		{0, 32, 11, false, 0},
		{8, 32, 11, false, 0},
		{11, 32, 11, false, 0},
		{12, 32, 12, true, 1},
		{256, 32, 32, true, 1},
		{1 << 31, 8192, 4096, true, 8},
		{600, 1024, 600, true, 2},
	}
	for _, tc := range segs {
		got, ind := segmentsPerRequest(tc.backend, tc.ours)
		pages := 0
		if ind {
			pages = indirectPages(got)
		}
		if got != tc.want || ind != tc.indirect || pages != tc.pages {
			t.Errorf("segmentsPerRequest(%d, %d) = %d, %v (%d pages); want %d, %v (%d pages)", tc.backend, tc.ours, got, ind, pages, tc.want, tc.indirect, tc.pages)
		}
	}
}

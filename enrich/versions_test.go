package enrich_test

import (
	"testing"

	"github.com/spectora-stream/spectora-stream/enrich"
)

// A version covers an equal one and, as times, any earlier one; a hash or a
// counter covers only itself, so each change is seen as one.
func TestVersionCoversOnlyWhatItIs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		seen, listed string
		covers       bool
	}{
		{"2026-11-27T10:00:00Z", "2026-11-27T10:00:00Z", true},
		{"2026-11-27T10:00:01Z", "2026-11-27T10:00:00Z", true},
		{"2026-11-27T10:00:00Z", "2026-11-27T10:00:01Z", false},
		{"2026-11-27T10:00:00Z", "2026-11-27T11:00:00+01:00", true}, // the same instant
		{"2026-11-27T10:00:00.000Z", "2026-11-27T10:00:00Z", true},
		{"sha256:aa", "sha256:bb", false},
		{"sha256:bb", "sha256:aa", false},
		{"10", "9", false},
		{"9", "10", false},
		{"2024-01-01 00:00:00 UTC", "2024-01-02 00:00:00 UTC", false},
		{"", "2026-11-27T10:00:00Z", false},
	}
	for _, tt := range tests {
		if got := (enrich.VersionEntry{Version: tt.seen}).Covers(tt.listed); got != tt.covers {
			t.Errorf("seen %q covers listed %q: %v, want %v", tt.seen, tt.listed, got, tt.covers)
		}
	}
}

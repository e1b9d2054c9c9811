package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLoad_warmup: rate_limiting.warmup is read per account (and from the
// provider's block), and a bad ramp is an error naming the field.
func TestLoad_warmup(t *testing.T) {
	t.Parallel()
	ramp := func(w map[string]any) map[string]any { return map[string]any{"warmup": w} }
	tests := []struct {
		name      string
		rec       record
		config    string
		wantStart time.Time
		wantDaily []int
		wantErr   string
	}{
		{"account ramp", gmailRecord("g", "g@example.com").with("rate_limiting", ramp(map[string]any{"start": "2026-12-01", "daily": []int{50, 100, 200}})),
			"", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), []int{50, 100, 200}, ""},
		{"RFC 3339 start", gmailRecord("g", "g@example.com").with("rate_limiting", ramp(map[string]any{"start": "2026-12-01T06:00:00+01:00", "daily": []int{5}})),
			"", time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC), []int{5}, ""},
		{"provider default", gmailRecord("g", "g@example.com"),
			`{"providers": {"gmail": {"rate_limiting": {"warmup": {"start": "2026-11-30", "daily": [10, 20]}}}}}`,
			time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), []int{10, 20}, ""},
		{"account start over the provider's days", gmailRecord("g", "g@example.com").with("rate_limiting", ramp(map[string]any{"start": "2026-12-05"})),
			`{"providers": {"gmail": {"rate_limiting": {"warmup": {"start": "2026-11-30", "daily": [10, 20]}}}}}`,
			time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), []int{10, 20}, ""},
		{"no ramp", gmailRecord("g", "g@example.com"), "", time.Time{}, nil, ""},
		{"bad date", gmailRecord("g", "g@example.com").with("rate_limiting", ramp(map[string]any{"start": "1 Dec", "daily": []int{5}})),
			"", time.Time{}, nil, "rate_limiting.warmup.start"},
		{"zero day", gmailRecord("g", "g@example.com").with("rate_limiting", ramp(map[string]any{"start": "2026-12-01", "daily": []int{5, 0}})),
			"", time.Time{}, nil, "rate_limiting.warmup.daily"},
		{"start without days", gmailRecord("g", "g@example.com").with("rate_limiting", ramp(map[string]any{"start": "2026-12-01"})),
			"", time.Time{}, nil, "warmup needs both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"accounts.json": accountsJSON(t, tc.rec)}
			if tc.config != "" {
				files["config.json"] = tc.config
			}
			snap, _, err := loadDir(t, writeDir(t, files))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := snap.Accounts[0].RateLimiting.Warmup
			if !w.Start.Equal(tc.wantStart) || !slices.Equal(w.Daily, tc.wantDaily) {
				t.Errorf("warmup = %v %v, want %v %v", w.Start, w.Daily, tc.wantStart, tc.wantDaily)
			}
		})
	}
}

package traffic

import (
	"testing"
	"time"
)

func TestRing(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_800_000_000-1_800_000_000%60, 0) // a minute's start
	type sample struct {
		at  time.Duration
		cum Totals
	}
	tests := []struct {
		name    string
		samples []sample
		readAt  time.Duration
		want    map[int]Totals // index in Last → counts; others zero
	}{
		{"empty", nil, 0, nil},
		{"one minute, two samples", []sample{{0, Totals{}}, {10 * time.Second, Totals{3, 1, 2}}, {50 * time.Second, Totals{5, 1, 2}}},
			55 * time.Second, map[int]Totals{59: {5, 1, 2}}},
		{"spread over minutes", []sample{{0, Totals{}}, {30 * time.Second, Totals{1, 0, 0}}, {90 * time.Second, Totals{4, 0, 1}}},
			2 * time.Minute, map[int]Totals{57: {1, 0, 0}, 58: {3, 0, 1}}},
		{"an hour later the old minute is gone", []sample{{0, Totals{}}, {30 * time.Second, Totals{7, 0, 0}}},
			time.Hour, nil},
		{"a slot reused after an hour counts afresh", []sample{{0, Totals{}}, {30 * time.Second, Totals{7, 0, 0}}, {time.Hour + time.Second, Totals{9, 0, 0}}},
			time.Hour + 2*time.Second, map[int]Totals{59: {2, 0, 0}}},
		{"a counter going down counts nothing", []sample{{0, Totals{10, 0, 0}}, {time.Second, Totals{2, 0, 0}}, {2 * time.Second, Totals{3, 0, 0}}},
			3 * time.Second, map[int]Totals{59: {11, 0, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r Ring
			for _, s := range tc.samples {
				r.Sample(t0.Add(s.at), s.cum)
			}
			got := r.Last(t0.Add(tc.readAt))
			if len(got) != Slots {
				t.Fatalf("%d minutes, want %d", len(got), Slots)
			}
			if want := t0.Add(tc.readAt).Truncate(time.Minute).UTC(); !got[Slots-1].Start.Equal(want) {
				t.Errorf("last minute starts %v, want %v", got[Slots-1].Start, want)
			}
			for i, m := range got {
				if m.Totals != tc.want[i] {
					t.Errorf("minute %d: %+v, want %+v", i, m.Totals, tc.want[i])
				}
			}
		})
	}
}

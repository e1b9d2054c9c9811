package logthrottle_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logthrottle"
)

// recorder is a slog.Handler that keeps each record as one line:
// "LEVEL msg k=v k=v", attributes in order, times as offsets from t0.
// Handlers made by WithAttrs write to the same lines.
type recorder struct {
	*sink
	attrs []slog.Attr // from WithAttrs
}

type sink struct {
	mu    sync.Mutex
	lines []string
	t0    time.Time
}

func newRecorder(t0 time.Time) *recorder { return &recorder{sink: &sink{t0: t0}} }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	add := func(a slog.Attr) bool {
		v := a.Value.String()
		if a.Value.Kind() == slog.KindTime {
			v = a.Value.Time().Sub(r.t0).String()
		}
		b.WriteString(" " + a.Key + "=" + v)
		return true
	}
	for _, a := range r.attrs {
		add(a)
	}
	rec.Attrs(add)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, b.String())
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{sink: r.sink, attrs: append(slices.Clip(r.attrs), as...)}
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

// take returns the lines written since the last take.
func (s *sink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lines
	s.lines = nil
	return l
}

// clock is a settable time, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t0 time.Time) *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *clock) now() time.Time                   { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration)          { c.ns.Add(int64(d)) }
func (c *clock) since(t0 time.Time) time.Duration { return c.now().Sub(t0) }

var (
	busyA = logthrottle.Key{Account: "a", Reason: "busy"}
	busyB = logthrottle.Key{Account: "b", Reason: "busy"}
	lostA = logthrottle.Key{Account: "a", Reason: "upstream_lost"}
	limit = logthrottle.Key{Reason: "connection_limit"}
)

// step is one action of a script: advance the clock, then log an event
// of key (n times), or flush.
type step struct {
	after time.Duration
	key   logthrottle.Key
	n     int    // events; 0 with flush
	flush string // "due" (Flush) or "all" (FlushAll)
	want  []string
}

func TestThrottle_scripts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		maxKeys int
		steps   []step
	}{{
		name: "first in full, then counted, summary by the next event after the interval",
		steps: []step{
			{key: busyA, n: 1, want: []string{"WARN busy n=1"}},
			{after: time.Second, key: busyA, n: 3},
			{after: 3 * time.Second, key: busyA, n: 1},
			{after: time.Second, key: busyA, n: 1, want: []string{
				"WARN busy account=a reason=busy repeated=5 first=1s last=5s"}},
			{after: time.Second, key: busyA, n: 2},
		},
	}, {
		name: "keys are counted apart",
		steps: []step{
			{key: busyA, n: 2, want: []string{"WARN busy n=1"}},
			{key: busyB, n: 2, want: []string{"WARN busy n=1"}},
			{key: lostA, n: 2, want: []string{"WARN upstream_lost n=1"}},
			{key: limit, n: 2, want: []string{"WARN connection_limit n=1"}},
			{after: 5 * time.Second, flush: "due", want: []string{
				"WARN busy account=a reason=busy repeated=1 first=0s last=0s",
				"WARN busy account=b reason=busy repeated=1 first=0s last=0s",
				"WARN connection_limit reason=connection_limit repeated=1 first=0s last=0s",
				"WARN upstream_lost account=a reason=upstream_lost repeated=1 first=0s last=0s"}},
		},
	}, {
		name: "Flush writes only what is due; FlushAll everything owed",
		steps: []step{
			{key: busyA, n: 3, want: []string{"WARN busy n=1"}},
			{after: 4 * time.Second, flush: "due"},
			{after: time.Second, flush: "due", want: []string{
				"WARN busy account=a reason=busy repeated=2 first=0s last=0s"}},
			{after: time.Second, key: busyA, n: 4},
			{flush: "due"},
			{flush: "all", want: []string{
				"WARN busy account=a reason=busy repeated=4 first=6s last=6s"}},
			{flush: "all"},
		},
	}, {
		name: "a key quiet for an interval is shown in full again, its last burst summed up first",
		steps: []step{
			{key: busyA, n: 2, want: []string{"WARN busy n=1"}},
			{after: time.Hour, key: busyA, n: 1, want: []string{
				"WARN busy account=a reason=busy repeated=1 first=0s last=0s",
				"WARN busy n=1"}},
			{after: 5 * time.Second, key: busyA, n: 1, want: []string{"WARN busy n=1"}},
		},
	}, {
		name:    "a full table counts new keys under one catch-all key until quiet keys are forgotten",
		maxKeys: 2,
		steps: []step{
			{key: busyA, n: 1, want: []string{"WARN busy n=1"}},
			{key: busyB, n: 1, want: []string{"WARN busy n=1"}},
			{key: lostA, n: 2, want: []string{"WARN upstream_lost n=1"}}, // the catch-all's first
			{key: limit, n: 3},
			{after: 5 * time.Second, flush: "due", want: []string{
				"WARN log events of other kinds (too many kinds to tell apart) reason=other repeated=4 first=0s last=0s"}},
			// busyA, busyB and the catch-all have been quiet for 5s: forgotten.
			{after: 5 * time.Second, flush: "due"},
			{key: limit, n: 1, want: []string{"WARN connection_limit n=1"}},
			{key: lostA, n: 1, want: []string{"WARN upstream_lost n=1"}},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			clk, rec := newClock(t0), newRecorder(t0)
			log := slog.New(rec)
			th := logthrottle.New(logthrottle.Options{Logger: log, MaxKeys: tc.maxKeys, Now: clk.now})
			for i, s := range tc.steps {
				clk.advance(s.after)
				switch s.flush {
				case "due":
					th.Flush()
				case "all":
					th.FlushAll()
				}
				for range s.n {
					th.Warn(log, s.key, s.key.Reason, "n", 1)
				}
				got := rec.take()
				if s.flush != "" {
					slices.Sort(got) // one Flush's summaries come in map order
				}
				if !slices.Equal(got, s.want) {
					t.Fatalf("step %d: lines\n%s\nwant\n%s", i, strings.Join(got, "\n"), strings.Join(s.want, "\n"))
				}
			}
		})
	}
}

// TestThrottle_levelAndCallerAttributes: the full line goes through the
// caller's logger with its attributes and level; the summary through the
// Throttle's logger, at the level of the key's first event.
func TestThrottle_levelAndCallerAttributes(t *testing.T) {
	t.Parallel()
	clk, rec := newClock(time.Unix(0, 0)), newRecorder(time.Unix(0, 0))
	th := logthrottle.New(logthrottle.Options{Logger: slog.New(rec), Now: clk.now})
	conn := slog.New(rec).With("conn_id", "c1")
	th.Error(conn, busyA, "account cannot send", "err", "boom")
	th.Error(conn, busyA, "account cannot send", "err", "boom")
	th.FlushAll()
	want := "ERROR account cannot send conn_id=c1 err=boom\n" +
		"ERROR account cannot send account=a reason=busy repeated=1 first=0s last=0s"
	if got := strings.Join(rec.take(), "\n"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestThrottle_concurrentEventsAllAccountedFor: from many goroutines, the
// full lines plus the summaries' counts equal the events, per key.
func TestThrottle_concurrentEventsAllAccountedFor(t *testing.T) {
	t.Parallel()
	clk, rec := newClock(time.Unix(0, 0)), newRecorder(time.Unix(0, 0))
	log := slog.New(rec)
	th := logthrottle.New(logthrottle.Options{Logger: log, Interval: time.Second, Now: clk.now})
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			key := logthrottle.Key{Account: fmt.Sprint(g % 2), Reason: "busy"}
			for i := range each {
				if i%100 == 0 {
					clk.advance(300 * time.Millisecond)
					th.Flush()
				}
				th.Warn(log, key, "busy")
			}
		})
	}
	wg.Wait()
	th.FlushAll()
	lines := rec.take()
	got := map[string]int{}
	for _, l := range lines {
		acct, n := "", 1
		if _, err := fmt.Sscanf(l, "WARN busy account=%s reason=busy repeated=%d", &acct, &n); err != nil {
			acct = "full"
		}
		got[acct] += n
	}
	total := 0
	for _, n := range got {
		total += n
	}
	if total != goroutines*each {
		t.Fatalf("lines account for %d events, want %d (%v)", total, goroutines*each, got)
	}
	if len(lines) > 100 {
		t.Errorf("%d lines for %d events over %v", len(lines), goroutines*each, clk.since(time.Unix(0, 0)))
	}
}

// BenchmarkThrottle_counted is the cost of an event that is only counted,
// the common case under a flood.
func BenchmarkThrottle_counted(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	th := logthrottle.New(logthrottle.Options{Logger: log})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			th.Warn(log, busyA, "no upstream session free", "conn_id", "c1", "wait", time.Millisecond)
		}
	})
}

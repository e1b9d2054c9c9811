package token

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Prewarm says which accounts a Refresher fetches tokens for at start-up
// (config.json "global.oauth2.token_prewarm").
type Prewarm string

const (
	// PrewarmRecent fetches tokens for the accounts used within the active
	// window before the restart (as the state file records) that have no
	// valid persisted token. The default: a restart costs requests only for
	// the accounts that are busy, and none for tokens that survived.
	PrewarmRecent Prewarm = "recent"
	// PrewarmAll fetches a token for every account without a valid one.
	PrewarmAll Prewarm = "all"
	// PrewarmOff fetches nothing at start-up: tokens come on first use.
	PrewarmOff Prewarm = "off"
)

// Defaults for zero RefresherOptions fields.
const (
	DefaultRefreshWorkers = 25        // "num_token_refresh_workers"
	DefaultFetchWorkers   = 25        // "num_token_fetching_workers"
	DefaultActiveWindow   = time.Hour // only accounts used this recently are renewed
	DefaultScanInterval   = time.Second
)

// RefresherOptions configure a Refresher.
type RefresherOptions struct {
	// Workers bounds concurrent background renewals; 0 means 25.
	Workers int
	// FetchWorkers bounds concurrent pre-warm requests; 0 means 25.
	FetchWorkers int
	// Prewarm picks the accounts warmed at start-up; "" means PrewarmRecent.
	Prewarm Prewarm
	// ActiveWindow: only accounts used this recently are renewed in the
	// background (and, with PrewarmRecent, warmed); 0 means one hour.
	ActiveWindow time.Duration
	// Interval is how often Run looks for due renewals; 0 means 1 s.
	Interval time.Duration
	// Now is the clock; nil means time.Now. Use the Sources' clock.
	Now func() time.Time
	// Logger receives pre-warm progress and renewal summaries; nil
	// discards.
	Logger *slog.Logger
}

// Refresher renews access tokens in the background, before they expire,
// for the accounts in use, and warms tokens at start-up. A Source decides
// when it is due (see Source.Status NextRefresh); the Refresher only bounds
// how many requests run at once, so that 10,000 accounts never cause 10,000
// simultaneous requests. Per-account single flight still holds: a renewal
// joins a request a client already started.
type Refresher struct {
	sources func() []*Source
	opts    RefresherOptions
	log     *slog.Logger
}

// NewRefresher returns a Refresher for the Sources that sources returns
// each time it looks (so that a reload's new accounts are included). It
// starts nothing.
func NewRefresher(sources func() []*Source, opts RefresherOptions) *Refresher {
	opts.Workers = cmp.Or(opts.Workers, DefaultRefreshWorkers)
	opts.FetchWorkers = cmp.Or(opts.FetchWorkers, DefaultFetchWorkers)
	opts.Prewarm = cmp.Or(opts.Prewarm, PrewarmRecent)
	opts.ActiveWindow = cmp.Or(opts.ActiveWindow, DefaultActiveWindow)
	opts.Interval = cmp.Or(opts.Interval, DefaultScanInterval)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Refresher{sources: sources, opts: opts, log: opts.Logger}
}

// Run pre-warms (in the background) and renews due tokens every Interval
// until ctx ends. It returns after every request in flight has ended (each
// within its Source's Timeout), whoever started it, and the accounts' last
// use has been handed to their Store.
func (r *Refresher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { r.Prewarm(ctx) })
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
loop:
	for {
		select {
		case <-t.C:
			r.RenewDue(ctx)
		case <-ctx.Done():
			break loop
		}
	}
	wg.Wait()
	// Requests that clients started may still run: let them finish, so a
	// rotated refresh token is saved before the process exits.
	for _, s := range r.sources() {
		s.waitIdle()
		s.saveUsage()
	}
}

// RenewDue requests a token for every account that is due (see
// Source.Status), at most Workers at a time, and returns once all have
// ended, with how many it requested and how many failed.
func (r *Refresher) RenewDue(ctx context.Context) (renewed, failed int) {
	now := r.opts.Now()
	var due []*Source
	for _, s := range r.sources() {
		if s.due(now, r.opts.ActiveWindow) {
			due = append(due, s)
		}
	}
	if len(due) == 0 {
		return 0, 0
	}
	bad := r.each(ctx, due, r.opts.Workers, nil)
	if bad > 0 {
		r.log.Warn("background token renewal", "renewed", len(due)-bad, "failed", bad)
	} else {
		r.log.Debug("background token renewal", "renewed", len(due))
	}
	return len(due), bad
}

// Prewarm fetches tokens at start-up for the accounts Prewarm selects, at
// most FetchWorkers at a time, logging progress at every tenth. It returns
// how many it fetched and how many failed.
func (r *Refresher) Prewarm(ctx context.Context) (fetched, failed int) {
	if r.opts.Prewarm == PrewarmOff {
		return 0, 0
	}
	now := r.opts.Now()
	all := r.sources()
	var want []*Source
	for _, s := range all {
		if s.wantsPrewarm(now, r.opts.ActiveWindow, r.opts.Prewarm == PrewarmAll) {
			want = append(want, s)
		}
	}
	r.log.Info("token pre-warm", "accounts", len(all), "to_fetch", len(want),
		"mode", string(r.opts.Prewarm), "workers", r.opts.FetchWorkers)
	if len(want) == 0 {
		return 0, 0
	}
	start := time.Now()
	step := max(len(want)/10, 1)
	var done atomic.Int64
	bad := r.each(ctx, want, r.opts.FetchWorkers, func(failedSoFar int) {
		if n := done.Add(1); n%int64(step) == 0 && int(n) < len(want) {
			r.log.Info("token pre-warm progress", "done", n, "of", len(want), "failed", failedSoFar)
		}
	})
	r.log.Info("token pre-warm finished", "fetched", len(want)-bad, "failed", bad,
		"ms", time.Since(start).Milliseconds(), "cancelled", ctx.Err() != nil)
	return len(want) - bad, bad
}

// each requests a token for every source with at most workers at a time,
// calling progress after each; it returns how many failed. Once ctx ends
// no new request starts (the rest count as failed).
func (r *Refresher) each(ctx context.Context, sources []*Source, workers int, progress func(failed int)) int {
	var next, bad atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(sources)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(sources) {
					return
				}
				if err := sources[i].background(ctx); err != nil {
					bad.Add(1)
				}
				if progress != nil {
					progress(int(bad.Load()))
				}
			}
		})
	}
	wg.Wait()
	return int(bad.Load())
}

// background makes a request now, or joins the one in flight, without
// counting as use of the account. It waits for the request to end even
// when ctx ends first (within the Source's Timeout), so that a Refresher
// stopping at shutdown lets a rotation be saved; ctx only stops new
// requests.
func (s *Source) background(ctx context.Context) error {
	s.mu.Lock()
	f, err := s.flightLocked(ctx, s.now())
	s.mu.Unlock()
	if err != nil {
		return err
	}
	<-f.done
	return f.err
}

// waitIdle waits for the request in flight, if any, to end.
func (s *Source) waitIdle() {
	s.mu.Lock()
	f := s.inflight
	s.mu.Unlock()
	if f != nil {
		<-f.done
	}
}

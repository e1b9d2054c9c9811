package clustertoken

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/rueidis"
)

// Follower is a token source kept in step with the shared records
// (*token.Source): SeedShared writes its refresh token to an emptied
// record; FollowShared writes a rotation made while Redis did not answer,
// and lifts a needs_consent verdict the record no longer holds.
type Follower interface {
	SeedShared(ctx context.Context) (bool, error)
	FollowShared(ctx context.Context) (bool, error)
}

// epochKey names the current life of the shared token records. It is
// written once into an empty Redis; when it is gone, Redis lost its data
// (restarted without persistence, flushed) and every proxy re-seeds.
const epochKey = "xp:tokens:epoch"

// DefaultSyncEvery is how often a Sync looks at Redis.
const DefaultSyncEvery = 500 * time.Millisecond

// Sync keeps this proxy's token sources in step with the shared records
// where they change without a request of this proxy's: it re-seeds the
// records from the sources once per Redis epoch (at start, and whenever
// Redis comes back empty; a source seeds only what Redis lacks or holds
// in an older version, Shared.Seed, so proxies seeding at once do no
// harm); it writes the rotations a source made on its own while Redis did
// not answer, and lifts the needs_consent verdicts that another proxy's
// reset cleared.
type Sync struct {
	s       *Shared
	sources func() []Follower
	every   time.Duration
	log     *slog.Logger
	seeded  string // the epoch this proxy has seeded; only Run's goroutine or Check's caller touch it
}

// NewSync runs every DefaultSyncEvery; sources lists the token sources in
// force at each round.
func NewSync(s *Shared, sources func() []Follower, log *slog.Logger) *Sync {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sync{s: s, sources: sources, every: DefaultSyncEvery, log: log}
}

// Reseed seeds when Redis's epoch is not the one this proxy last seeded
// (Redis came back empty, or this proxy starts), or when the last round
// could not reach Redis, and returns how many records it wrote. Not safe for concurrent use.
func (r *Sync) Reseed(ctx context.Context) (int, error) {
	cctx, cancel := r.s.call(ctx)
	fresh := newEpoch()
	// SET NX GET: the epoch in force, or ours if there was none.
	cur, err := r.s.r.Do(cctx, r.s.r.B().Set().Key(epochKey).Value(fresh).Nx().Get().Build()).ToString()
	cancel()
	if err != nil && !rueidis.IsRedisNil(err) {
		// Unreachable: a proxy may renew on its own meanwhile (a rotation
		// with the next version in its state file), so the first round
		// that reaches Redis again seeds whatever the epoch.
		r.seeded = ""
		return 0, fmt.Errorf("token epoch: %w", err)
	}
	if rueidis.IsRedisNil(err) {
		cur = fresh
	}
	if cur == r.seeded {
		return 0, nil
	}
	n := 0
	for _, src := range r.sources() {
		ok, err := src.SeedShared(ctx)
		if err != nil {
			return n, err // the epoch stays unseeded: the next check goes on
		}
		if ok {
			n++
		}
	}
	if n > 0 {
		r.log.Warn("shared token records were missing or older than this proxy's state file: re-seeded", "accounts", n)
	}
	r.seeded = cur
	return n, nil
}

// Follow writes the rotations made while Redis did not answer and lifts
// the needs_consent verdicts the shared records no longer hold
// (Follower.FollowShared), and returns how many sources changed. It asks
// Redis only for sources in one of those cases.
func (r *Sync) Follow(ctx context.Context) (int, error) {
	n := 0
	for _, src := range r.sources() {
		ok, err := src.FollowShared(ctx)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// Run re-seeds and follows every interval until ctx ends.
func (r *Sync) Run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		if _, err := r.Reseed(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("token re-seed check failed", "err", err)
		}
		if _, err := r.Follow(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("token follow-up failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

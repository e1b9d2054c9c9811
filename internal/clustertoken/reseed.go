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

// Seeder is a token source that can write its refresh token to an
// emptied shared record (*token.Source).
type Seeder interface {
	SeedShared(ctx context.Context) (bool, error)
}

// epochKey names the current life of the shared token records. It is
// written once into an empty Redis; when it is gone, Redis lost its data
// (restarted without persistence, flushed) and every proxy re-seeds.
const epochKey = "xp:tokens:epoch"

// DefaultReseedEvery is how often a Reseeder checks the epoch.
const DefaultReseedEvery = time.Second

// Reseeder re-seeds the shared token records from this proxy's token
// sources once per Redis epoch: at start, and whenever Redis comes back
// empty. A source seeds only what Redis lacks or holds in an older
// version (Shared.Seed), so proxies seeding at once do no harm.
type Reseeder struct {
	s       *Shared
	sources func() []Seeder
	every   time.Duration
	log     *slog.Logger
	seeded  string // the epoch this proxy has seeded; only Run's goroutine or Check's caller touch it
}

// NewReseeder checks every DefaultReseedEvery; sources lists the token
// sources in force at each check.
func NewReseeder(s *Shared, sources func() []Seeder, log *slog.Logger) *Reseeder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reseeder{s: s, sources: sources, every: DefaultReseedEvery, log: log}
}

// Check seeds when Redis's epoch is not the one this proxy last seeded,
// and returns how many records it wrote. Not safe for concurrent use.
func (r *Reseeder) Check(ctx context.Context) (int, error) {
	cctx, cancel := r.s.call(ctx)
	fresh := newEpoch()
	// SET NX GET: the epoch in force, or ours if there was none.
	cur, err := r.s.r.Do(cctx, r.s.r.B().Set().Key(epochKey).Value(fresh).Nx().Get().Build()).ToString()
	cancel()
	if err != nil && !rueidis.IsRedisNil(err) {
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
	if r.seeded != "" || n > 0 {
		r.log.Warn("redis had lost shared token records: re-seeded them from this proxy's state file", "accounts", n)
	}
	r.seeded = cur
	return n, nil
}

// Run checks until ctx ends.
func (r *Reseeder) Run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		if _, err := r.Check(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("token re-seed check failed", "err", err)
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

package clusteraccounts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

// docKey is the hash holding the account set: v (version), body (the
// accounts.json bytes).
const docKey = "xp:accounts"

// DefaultPollEvery is how often Run looks for a newer version.
const DefaultPollEvery = 500 * time.Millisecond

// VersionFileName is the file, in the token state directory, that keeps
// the version of the document the local accounts.json holds.
const VersionFileName = "cluster-accounts-version"

// maxEditAttempts bounds how often Edit starts over after losing a race.
const maxEditAttempts = 8

// Options configure a Set.
type Options struct {
	// Path is the local accounts.json; ConfigPath the config.json whose
	// provider settings validate it ("" for built-in defaults).
	Path, ConfigPath string
	// VersionFile keeps the local version; required.
	VersionFile string
	// PollEvery is Run's interval; 0 means DefaultPollEvery.
	PollEvery time.Duration
	Logger    *slog.Logger
}

// Set is this proxy's side of the cluster's account set.
type Set struct {
	r       rueidis.Client
	timeout time.Duration
	o       Options
	log     *slog.Logger

	mu   sync.Mutex // one pull, edit or publish at a time; above ver, body and pending
	ver  int64      // version the local file holds; 0 before any
	body []byte     // the local file's bytes at ver
	// pending: an edit was applied to the local file but Redis did not
	// answer its commit; Run commits it first thing once Redis answers.
	pending bool
}

// ErrNotShared is wrapped by Edit's error when the edit was applied to the
// local file but could not be committed to Redis: the proxy serves it,
// and Run commits it when Redis answers (unless another proxy committed
// first: the cluster's version then wins).
var ErrNotShared = errors.New("applied on this proxy only: redis did not answer")

// New returns the Set of the cluster c is connected to.
func New(c *cluster.Client, o Options) (*Set, error) {
	if o.Path == "" || o.VersionFile == "" {
		return nil, errors.New("cluster accounts: no accounts file or version file")
	}
	if o.PollEvery <= 0 {
		o.PollEvery = DefaultPollEvery
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(o.VersionFile), 0o700); err != nil {
		return nil, fmt.Errorf("cluster accounts: %w", err)
	}
	s := &Set{r: c.Redis(), timeout: c.Timeout(), o: o, log: o.Logger}
	if b, err := os.ReadFile(o.VersionFile); err == nil {
		s.ver, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	return s, nil
}

// Version is the version of the account set the local file holds.
func (s *Set) Version() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ver
}

func (s *Set) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Join makes the local file the cluster's at start-up: the first proxy
// of a cluster imports its accounts.json; the others write the cluster's
// document over theirs. changed reports that the local file was
// rewritten (the configuration must be loaded again).
func (s *Set) Join(ctx context.Context) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	local, err := os.ReadFile(s.o.Path)
	if err != nil {
		return false, fmt.Errorf("cluster accounts: %w", err)
	}
	s.body = local
	v, err := s.version(ctx)
	if err != nil {
		return false, err
	}
	if v == 0 || v < s.ver {
		return false, s.seedLocked(ctx)
	}
	// The cluster's document wins over the local file, even at the
	// version this proxy last had: the file may have been edited while
	// the proxy was stopped, and then it is a stale copy.
	s.ver = 0
	return s.pullLocked(ctx)
}

// Pull brings the local file to the cluster's newest version; changed
// reports that it was rewritten. A document missing from Redis, or older
// than the local one, is re-seeded from the local file.
func (s *Set) Pull(ctx context.Context) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pullLocked(ctx)
}

func (s *Set) pullLocked(ctx context.Context) (bool, error) {
	v, err := s.version(ctx)
	if err != nil {
		return false, err
	}
	if v == s.ver && v != 0 {
		return false, nil
	}
	if v < s.ver || v == 0 {
		return false, s.seedLocked(ctx)
	}
	cctx, cancel := s.call(ctx)
	m, err := s.r.Do(cctx, s.r.B().Hmget().Key(docKey).Field("v", "body").Build()).ToArray()
	cancel()
	if err != nil || len(m) != 2 {
		return false, fmt.Errorf("cluster accounts: read document: %w", err)
	}
	v, err = m[0].AsInt64()
	if err != nil {
		return false, fmt.Errorf("cluster accounts: read document version: %w", err)
	}
	body, err := m[1].AsBytes()
	if err != nil {
		return false, fmt.Errorf("cluster accounts: read document: %w", err)
	}
	if bytes.Equal(body, s.body) {
		s.setVersionLocked(v, body)
		return false, nil
	}
	if err := config.ReplaceAccounts(s.o.Path, s.o.ConfigPath, body); err != nil {
		return false, fmt.Errorf("cluster accounts: version %d does not load here, local file kept: %w", v, err)
	}
	s.setVersionLocked(v, body)
	s.log.Info("account set changed in the cluster: local accounts file rewritten", "version", v)
	return true, nil
}

// version is the cluster's version of the document; 0 when it has none.
func (s *Set) version(ctx context.Context) (int64, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	v, err := s.r.Do(ctx, s.r.B().Hget().Key(docKey).Field("v").Build()).AsInt64()
	switch {
	case rueidis.IsRedisNil(err):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("cluster accounts: read version: %w", err)
	}
	return v, nil
}

// seedScript writes the document when it is missing or older than
// ARGV[1]; the import at a cluster's first start and the re-seed of an
// emptied Redis.
var seedScript = rueidis.NewLuaScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'body', ARGV[2])
return 1`)

func (s *Set) seedLocked(ctx context.Context) error {
	ver := max(s.ver, 1)
	cctx, cancel := s.call(ctx)
	defer cancel()
	n, err := seedScript.Exec(cctx, s.r, []string{docKey}, []string{strconv.FormatInt(ver, 10), string(s.body)}).AsInt64()
	if err != nil {
		return fmt.Errorf("cluster accounts: seed: %w", err)
	}
	if n == 1 {
		s.log.Warn("account set missing or older in redis: written from this proxy's accounts file", "version", ver)
		s.setVersionLocked(ver, s.body)
	}
	return nil
}

// commitScript writes ARGV[2] as version ARGV[1]+1 if the version is
// still ARGV[1].
var commitScript = rueidis.NewLuaScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if cur ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', cur + 1, 'body', ARGV[2])
return cur + 1`)

// commitLocked commits the local file's current bytes over s.ver; false
// when another proxy committed first.
func (s *Set) commitLocked(ctx context.Context) (bool, error) {
	body, err := os.ReadFile(s.o.Path)
	if err != nil {
		return false, fmt.Errorf("cluster accounts: %w", err)
	}
	if bytes.Equal(body, s.body) {
		return true, nil
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	v, err := commitScript.Exec(cctx, s.r, []string{docKey}, []string{strconv.FormatInt(s.ver, 10), string(body)}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("cluster accounts: commit: %w", err)
	}
	if v == 0 {
		return false, nil
	}
	s.setVersionLocked(v, body)
	return true, nil
}

// Edit applies edit to the cluster's account set (see the package
// comment). An error from edit or from validation changes nothing.
func (s *Set) Edit(ctx context.Context, edit func(*config.AccountsFile) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range maxEditAttempts {
		if _, err := s.pullLocked(ctx); err != nil {
			return err
		}
		if err := config.EditAccounts(s.o.Path, s.o.ConfigPath, edit); err != nil {
			return err
		}
		ok, err := s.commitLocked(ctx)
		if err != nil {
			s.pending = true
			return fmt.Errorf("%w: %w", ErrNotShared, err)
		}
		if ok {
			return nil
		}
	}
	return errors.New("cluster accounts: other proxies kept changing the account set; try again")
}

// Publish commits the local file when it differs from the version it was
// synced at (an edit by hand, applied with SIGHUP). When another proxy
// committed meanwhile, the cluster's version wins and is written over the
// local file; changed reports that.
func (s *Set) Publish(ctx context.Context) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, err := s.commitLocked(ctx)
	if err != nil || ok {
		s.pending = err != nil
		return false, err
	}
	s.pending = false
	s.log.Warn("local accounts file edit lost a race with another proxy's: taking the cluster's version")
	return s.pullLocked(ctx)
}

// Run polls for newer versions until ctx ends and calls reload after the
// local file was rewritten (outside the Set's lock: reload may Publish).
func (s *Set) Run(ctx context.Context, reload func()) {
	t := time.NewTicker(s.o.PollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		pending := s.pending
		s.mu.Unlock()
		pull := s.Pull
		if pending {
			pull = s.Publish
		}
		changed, err := pull(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Debug("account set poll failed", "err", err)
			}
			continue
		}
		if changed {
			reload()
		}
	}
}

func (s *Set) setVersionLocked(v int64, body []byte) {
	s.ver, s.body = v, body
	if err := safefile.Replace(s.o.VersionFile, []byte(strconv.FormatInt(v, 10)+"\n")); err != nil {
		s.log.Warn("account set version not saved", "file", s.o.VersionFile, "err", err)
	}
}

package service

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/clusteraccounts"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/clustertoken"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// sharedState is what a proxy in cluster mode (global.cluster) shares
// through Redis besides caps and budgets: the accounts' tokens
// (clustertoken) and the account set (clusteraccounts). Nil when
// global.cluster is off or in dry-run.
type sharedState struct {
	tokens   *clustertoken.Shared
	accounts *clusteraccounts.Set // nil when the accounts live inside config.json
	closed   sync.Once
}

// joinTimeout bounds connecting to Redis and taking the account set at
// start-up.
const joinTimeout = 15 * time.Second

// joinCluster connects to Redis when global.cluster is set and makes the
// local accounts.json the cluster's (clusteraccounts.Set.Join); when that
// rewrote the file, it returns the configuration loaded again.
func (s *Service) joinCluster(snap *config.Snapshot) (*config.Snapshot, error) {
	if !snap.Global.Cluster.Enabled || s.opts.DryRun {
		return snap, nil
	}
	cl, err := s.clusterClient(snap.Global.Cluster) // cluster.go
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
	defer cancel()
	sh := &sharedState{tokens: clustertoken.New(cl)}
	if snap.AccountsPath == "" || snap.AccountsPath == snap.ConfigPath {
		s.log.Warn("cluster: the accounts are inside config.json, so the account set is not shared; use a separate accounts.json")
		s.shared = sh
		return snap, nil
	}
	set, err := clusteraccounts.New(cl, clusteraccounts.Options{
		Path: snap.AccountsPath, ConfigPath: snap.ConfigPath,
		VersionFile: filepath.Join(snap.Global.Tokens.StateDir, clusteraccounts.VersionFileName),
		Logger:      s.log,
	})
	if err == nil {
		var changed bool
		if changed, err = set.Join(ctx); err == nil && changed {
			var warns []config.Warning
			snap, warns, err = config.Load(s.opts.Load)
			for _, w := range warns {
				s.log.Warn("config", "warning", w.String())
			}
		}
	}
	if err != nil {
		s.closeCluster()
		return nil, fmt.Errorf("cluster: take the account set: %w", err)
	}
	sh.accounts = set
	s.shared = sh
	s.log.Info("cluster: account set joined", "version", set.Version())
	return snap, nil
}

// sharedTokens is the token.Shared for new token sources; nil outside
// cluster mode.
func (s *Service) sharedTokens() token.Shared {
	if s.shared == nil {
		return nil
	}
	return s.shared.tokens
}

// EditAccounts changes accounts.json for the admin API (admin.AccountsEditor):
// in cluster mode through the cluster's account set, else the local file.
func (s *Service) EditAccounts(snap *config.Snapshot, edit func(*config.AccountsFile) error) error {
	if s.shared == nil || s.shared.accounts == nil {
		return config.EditAccounts(snap.AccountsPath, snap.ConfigPath, edit)
	}
	err := s.shared.accounts.Edit(context.Background(), edit)
	if errors.Is(err, clusteraccounts.ErrNotShared) {
		// In force here (the reload follows); shared when Redis answers.
		s.log.Warn("cluster: account set edit applied on this proxy only for now", "err", err)
		return nil
	}
	return err
}

// publishAccounts shares a reloaded local edit of accounts.json (by hand,
// then SIGHUP); a no-op when the file is the cluster's version. It
// reports that the cluster's newer version replaced the file instead.
func (s *Service) publishAccounts() bool {
	if s.shared == nil || s.shared.accounts == nil {
		return false
	}
	changed, err := s.shared.accounts.Publish(context.Background())
	if err != nil {
		s.log.Warn("cluster: local accounts file not shared", "err", err)
	}
	return changed
}

// startShared starts the account set's poller (a newer version reloads)
// and the tokens' Sync (re-seeding, verdicts lifted elsewhere); the returned function stops them. Call it
// before the token sources stop; closeShared closes the client after.
func (s *Service) startShared() (stop func()) {
	if s.shared == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if set := s.shared.accounts; set != nil {
		wg.Go(func() {
			set.Run(ctx, func() {
				if err := s.Reload(); err != nil {
					s.log.Error("cluster: account set changed but reload failed", "err", err)
				}
			})
		})
	}
	follow := clustertoken.NewSync(s.shared.tokens, func() []clustertoken.Follower {
		srcs := s.tokenSources()
		out := make([]clustertoken.Follower, len(srcs))
		for i, src := range srcs {
			out[i] = src
		}
		return out
	}, s.log)
	wg.Go(func() { follow.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// closeShared closes the Redis client, last; once.
func (s *Service) closeShared() {
	if s.shared != nil {
		s.shared.closed.Do(s.closeCluster) // the client is cluster.go's
	}
}

// Close releases what New opened for a Service whose Run is not called
// (the probe commands): the Redis client of cluster mode. Run does it
// itself.
func (s *Service) Close() { s.closeShared(); s.closeCluster() }

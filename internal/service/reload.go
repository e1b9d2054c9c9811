package service

import (
	"fmt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// Reload re-reads config.json and accounts.json (SIGHUP, POST
// /admin/reload, an admin write). A file that fails validation changes
// nothing and the error says why. Otherwise new AUTHs see the new account
// set at once, and each account's runtime state (counters, cool-downs,
// token source, warm sessions) goes on by account_id: an edit that no
// upstream session depends on (vmta_name, smtp_password, budgets,
// max_concurrent_messages) keeps the warm sessions; an edit of the
// endpoint, TLS mode, credential, source address, mechanism, pool or
// disabled drains them (transactions in flight finish) and opens new ones
// on demand (account.Classify). Clients of an edited or removed account
// must authenticate again. Global settings other than the accounts' apply
// at the next restart.
func (s *Service) Reload() error {
	// Cluster mode: a local edit is shared first; if another proxy's
	// newer account set replaced it instead, that is what loads.
	s.publishAccounts() // shared.go
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	snap, warns, err := config.Load(s.opts.Load)
	for _, w := range warns {
		s.log.Warn("config", "warning", w.String())
	}
	if err != nil {
		s.log.Error("reload refused: configuration invalid; keeping the running one", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	prev := s.Snapshot()
	s.setSnapshot(snap)
	build := s.buildAccount
	if s.opts.DryRun {
		build = dryRunAccount
	}
	ch, err := s.Reg.Replace(snap, build)
	if err != nil {
		s.setSnapshot(prev)
		s.log.Error("reload refused: building accounts failed; keeping the running ones", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	s.log.Info("reloaded", "accounts", len(snap.Accounts), "added", len(ch.Added), "changed", len(ch.Changed),
		"sessions_reopened", len(ch.Reopened), "removed", len(ch.Removed))
	return nil
}

// Snapshot returns the configuration in force.
func (s *Service) Snapshot() *config.Snapshot {
	s.snapMu.RLock()
	defer s.snapMu.RUnlock()
	return s.Snap
}

func (s *Service) setSnapshot(snap *config.Snapshot) {
	s.snapMu.Lock()
	s.Snap = snap
	s.snapMu.Unlock()
}

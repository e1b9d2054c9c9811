package service

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

// budgetFile is where the budget counters persist, in the state directory.
const budgetFile = "budgets.json"

// budgetFlushEvery is the default Options.BudgetFlushInterval; it bounds
// what a crash can lose: the counts of the last few seconds
// (docs/config.md).
const budgetFlushEvery = 10 * time.Second

// openBudgets makes the book and loads the persisted counters, if any. A
// missing file is a first start; a broken one is logged and ignored (the
// budgets then start from zero, which errs towards sending, and the
// provider's own refusals still cool the account down).
func (s *Service) openBudgets() {
	s.budgets = quota.NewBook(nil)
	path := s.budgetPath()
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		s.log.Warn("budget state unreadable; starting from zero", "file", path, "err", err)
		return
	}
	if err := s.budgets.Load(bytes.NewReader(b)); err != nil {
		s.log.Warn("budget state broken; starting from zero", "file", path, "err", err)
		return
	}
	s.log.Info("budget state loaded", "file", path)
}

// budgetPath is budgets.json in the state directory, beside the token
// state (--state-dir, global.oauth2.state_dir, else next to accounts.json).
func (s *Service) budgetPath() string {
	snap := s.Snapshot()
	dir := snap.Global.Tokens.StateDir
	if dir == "" {
		dir = filepath.Dir(snap.AccountsPath)
	}
	return filepath.Join(dir, budgetFile)
}

// saveBudgets writes the counters atomically (temp file, fsync, rename).
func (s *Service) saveBudgets() {
	if s.budgets == nil {
		return
	}
	var buf bytes.Buffer
	if err := s.budgets.Save(&buf); err != nil {
		s.log.Warn("budget state not saved", "err", err)
		return
	}
	if err := safefile.Replace(s.budgetPath(), buf.Bytes()); err != nil {
		s.log.Warn("budget state not saved", "file", s.budgetPath(), "err", err)
	}
}

package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/adminclient"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// viewOf is what the API shows of an account, never a secret, in the
// shape its client reads (adminclient.Account).
func viewOf(c *config.Account) adminclient.Account {
	v := adminclient.Account{
		AccountID: c.ID, Email: c.Email, VMTAName: c.VMTAName, Provider: c.Provider,
		OAuthEndpoint: c.SMTPAddr, OAuthTokenURL: c.TokenURL,
	}
	if c.IPAddress.IsValid() {
		v.IPAddress = c.IPAddress.String()
	}
	return v
}

func (a *API) listAccounts(w http.ResponseWriter, _ *http.Request) {
	all := a.b.Registry().All()
	views := make([]adminclient.Account, 0, len(all))
	for _, acc := range all {
		views = append(views, viewOf(acc.Cfg))
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "total_accounts": len(views), "accounts": views})
}

// newAccount is the body of POST /admin/accounts (COMPAT.md): an
// accounts.json record and two switches.
type newAccount struct {
	config.AccountRecord
	Verify    *bool `json:"verify"`
	Overwrite bool  `json:"overwrite"`
}

// candidate resolves a request into the config.Account to verify: its
// credentials and the provider's token URL unless one is given.
func (a *API) candidate(n *newAccount) *config.Account {
	snap := a.b.Snapshot()
	c := &config.Account{
		ID: n.AccountID, Email: n.Email, Provider: n.Provider, ClientID: n.ClientID,
		ClientSecret: n.ClientSecret, RefreshToken: n.RefreshToken, TokenURL: n.TokenURL,
	}
	if c.TokenURL == "" {
		if p, ok := snap.Providers[n.Provider]; ok {
			c.TokenURL = p.TokenURL
		}
	}
	return c
}

func (a *API) verify(ctx context.Context, n *newAccount) error {
	if n.Verify != nil && !*n.Verify {
		return nil
	}
	c := a.candidate(n)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.b.VerifyCredentials(ctx, c); err != nil {
		return fmt.Errorf("verification failed: %w", err)
	}
	return nil
}

var errExists = errors.New("account already exists (use \"overwrite\": true to update it)")

// edit changes accounts.json and reloads, one request at a time. g holds
// the secrets the request gives (guarded).
func (a *API) edit(g given, fn func(*config.AccountsFile) error) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	snap := a.b.Snapshot()
	if err := a.editFile(snap, a.guarded(snap, g, fn)); err != nil {
		return err
	}
	if err := a.b.Reload(); err != nil {
		return fmt.Errorf("saved, but reload failed: %w", err)
	}
	return nil
}

// editFile applies fn to accounts.json: through the backend when it is an
// AccountsEditor (cluster mode: the cluster's account set), else with
// config.EditAccounts.
func (a *API) editFile(snap *config.Snapshot, fn func(*config.AccountsFile) error) error {
	if ed, ok := a.b.(AccountsEditor); ok {
		return ed.EditAccounts(snap, fn)
	}
	return config.EditAccounts(snap.AccountsPath, snap.ConfigPath, fn)
}

// guarded wraps an edit of accounts.json: the accounts before and after
// it must pass checkDestinations. It resolves the records against the
// provider blocks in force, so that only the request's change counts.
func (a *API) guarded(snap *config.Snapshot, g given, fn func(*config.AccountsFile) error) func(*config.AccountsFile) error {
	return func(f *config.AccountsFile) error {
		// A record that does not validate now still has what could be
		// read of it; the edit may be what fixes it. Nothing read would
		// let every secret pass as new: refuse then.
		before, err := f.Accounts(snap.Providers)
		if before == nil && err != nil {
			return fmt.Errorf("read the accounts before the change: %w", err)
		}
		if err := fn(f); err != nil {
			return err
		}
		after, err := f.Accounts(snap.Providers)
		if err != nil {
			return err
		}
		return checkDestinations(before, after, g)
	}
}

// gives returns the secrets the accounts of an add request give.
func gives(list ...*newAccount) given {
	g := given{}
	for _, n := range list {
		g.give(n.ClientSecret.Reveal(), n.RefreshToken.Reveal())
	}
	return g
}

// upsert adds n, or, when overwrite is set, merges it into the existing
// record with its email or account_id (config.AccountsFile.Upsert: what
// the request does not give stays, smtp_password and disabled above all).
func upsert(f *config.AccountsFile, n *newAccount) error {
	_, err := f.Upsert(&n.AccountRecord, n.Overwrite)
	if errors.Is(err, config.ErrAccountExists) {
		return errExists
	}
	return err
}

func (a *API) addAccount(w http.ResponseWriter, r *http.Request) {
	var n newAccount
	if !decode(w, r, &n) {
		return
	}
	if err := n.Complete(); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if !n.Overwrite && a.b.Registry().Find(n.Email) != nil {
		fail(w, http.StatusConflict, errExists.Error())
		return
	}
	if err := a.verify(r.Context(), &n); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	err := a.edit(gives(&n), func(f *config.AccountsFile) error { return upsert(f, &n) })
	switch {
	case errors.Is(err, errExists):
		fail(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, errRedirect):
		fail(w, http.StatusForbidden, err.Error())
		return
	case err != nil:
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	acc := a.b.Registry().Find(n.Email)
	if acc == nil {
		fail(w, http.StatusInternalServerError, "account saved but not loaded")
		return
	}
	a.log.Info("admin: account saved", "account", acc.Cfg.ID, "overwrite", n.Overwrite)
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "message": "account " + n.Email + " saved",
		"total_accounts": len(a.b.Registry().All()), "account": viewOf(acc.Cfg),
	})
}

type batchFailure struct {
	Email string `json:"email"`
	Error string `json:"error"`
}

func (a *API) addBatch(w http.ResponseWriter, r *http.Request) {
	var list []newAccount
	if !decode(w, r, &list) {
		return
	}
	if len(list) < 1 || len(list) > 100 {
		fail(w, http.StatusBadRequest, "a batch holds 1 to 100 accounts")
		return
	}
	failed := make([]*batchFailure, len(list))
	dup := make([]bool, len(list))
	seen := map[string]bool{}
	for i := range list {
		n := &list[i]
		if err := n.Complete(); err != nil {
			failed[i] = &batchFailure{Email: n.Email, Error: err.Error()}
			continue
		}
		key := strings.ToLower(n.Email)
		if seen[key] || (!n.Overwrite && a.b.Registry().Find(n.Email) != nil) {
			failed[i] = &batchFailure{Email: n.Email, Error: errExists.Error()}
			dup[i] = true
			continue
		}
		seen[key] = true
	}
	// Verify in parallel, a few at a time: each is a token request.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range list {
		if failed[i] != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := a.verify(r.Context(), &list[i]); err != nil {
				failed[i] = &batchFailure{Email: list[i].Email, Error: err.Error()}
			}
		}()
	}
	wg.Wait()
	var good []int
	for i := range list {
		if failed[i] == nil {
			good = append(good, i)
		}
	}
	added := 0
	for k, err := range a.saveBatch(list, good) {
		i := good[k]
		switch {
		case err == nil:
			added++
		case errors.Is(err, errExists):
			failed[i] = &batchFailure{Email: list[i].Email, Error: errExists.Error()}
			dup[i] = true
		default:
			failed[i] = &batchFailure{Email: list[i].Email, Error: err.Error()}
		}
	}
	var fails []*batchFailure
	allDup := true
	for i, f := range failed {
		if f != nil {
			fails = append(fails, f)
			allDup = allDup && dup[i]
		}
	}
	total := len(a.b.Registry().All())
	switch {
	case len(fails) == 0:
		writeJSON(w, http.StatusOK, map[string]any{"success": true, "message": fmt.Sprintf("%d accounts added", added),
			"added_count": added, "total_accounts": total})
	case added > 0:
		writeJSON(w, http.StatusPartialContent, map[string]any{"success": "partial", "added_count": added,
			"failed_count": len(fails), "failed_accounts": fails, "total_accounts": total})
	case allDup:
		writeJSON(w, http.StatusConflict, map[string]any{"success": false, "error": "all accounts already exist",
			"added_count": 0, "failed_count": len(fails), "failed_accounts": fails})
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "error": "no account added",
			"added_count": 0, "failed_count": len(fails), "failed_accounts": fails})
	}
}

// saveBatch saves list[i] for each i of idx, and returns one error per
// index. It tries them all in one edit first; when the loader refuses that
// (nothing is written then), it saves them one edit at a time, so that one
// bad record fails alone, with its own error, and the others are saved.
// The proxy reloads once, after the last write.
func (a *API) saveBatch(list []newAccount, idx []int) []error {
	errs := make([]error, len(idx))
	if len(idx) == 0 {
		return errs
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	snap := a.b.Snapshot()
	save := func(ks ...int) error {
		batch := make([]*newAccount, len(ks))
		for j, k := range ks {
			batch[j] = &list[idx[k]]
		}
		return a.editFile(snap, a.guarded(snap, gives(batch...), func(f *config.AccountsFile) error {
			for _, n := range batch {
				if err := upsert(f, n); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	all := make([]int, len(idx))
	for k := range all {
		all[k] = k
	}
	err := save(all...)
	switch {
	case err == nil:
	case len(idx) == 1:
		errs[0] = err
	default:
		for k := range idx {
			errs[k] = save(k)
		}
	}
	saved := false
	for _, err := range errs {
		saved = saved || err == nil
	}
	if !saved {
		return errs
	}
	if err := a.b.Reload(); err != nil {
		err = fmt.Errorf("saved, but reload failed: %w", err)
		for k := range errs {
			if errs[k] == nil {
				errs[k] = err
			}
		}
	}
	return errs
}

func (a *API) deleteAccount(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("email")
	err := a.edit(nil, func(f *config.AccountsFile) error { return f.Remove(f.Find(name)) })
	switch {
	case errors.Is(err, config.ErrNoAccount):
		fail(w, http.StatusNotFound, "no account "+name)
	case err != nil:
		fail(w, http.StatusBadRequest, err.Error())
	default:
		a.log.Info("admin: account deleted", "account", name)
		writeJSON(w, http.StatusOK, map[string]any{"success": true, "message": "account " + name + " deleted",
			"total_accounts": len(a.b.Registry().All())})
	}
}

// deleteInvalid removes the accounts whose credentials the provider
// rejected for good (invalid_grant); never on timeouts or 5xx.
func (a *API) deleteInvalid(w http.ResponseWriter, _ *http.Request) {
	var dead []string
	for _, acc := range a.b.Registry().All() {
		if a.b.TokenStatus(acc).Final {
			dead = append(dead, acc.Cfg.Email)
		}
	}
	if len(dead) > 0 {
		err := a.edit(nil, func(f *config.AccountsFile) error {
			for _, e := range dead {
				if err := f.Remove(f.Find(e)); err != nil && !errors.Is(err, config.ErrNoAccount) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			fail(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	if dead == nil {
		dead = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "deleted_count": len(dead), "deleted_accounts": dead,
		"total_accounts": len(a.b.Registry().All())})
}

func (a *API) deleteAll(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("confirm") != "true" {
		fail(w, http.StatusBadRequest, "deleting every account needs ?confirm=true")
		return
	}
	n := len(a.b.Registry().All())
	if err := a.edit(nil, func(f *config.AccountsFile) error { f.RemoveAll(); return nil }); err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.log.Warn("admin: all accounts deleted", "count", n)
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "deleted_count": n, "total_accounts": 0})
}

// accountStatus is the live view of GET /admin/accounts/{email}.
type accountStatus struct {
	adminclient.Account
	Disabled bool        `json:"disabled"`
	Token    TokenStatus `json:"token"`
	Sessions struct {
		Open   int64 `json:"open"`
		Busy   int64 `json:"busy"`
		Cap    int   `json:"cap"`
		Opened int64 `json:"opened_total"`
	} `json:"sessions"`
	InFlight int64 `json:"in_flight"`
	Messages struct {
		Sent      int64 `json:"sent"`
		Failed    int64 `json:"failed"`
		Ambiguous int64 `json:"ambiguous"`
	} `json:"messages"`
	LastReply *account.LastReply `json:"last_upstream_reply,omitempty"`
	Budgets   *quota.Status      `json:"budgets,omitempty"`
	Feedback  any                `json:"feedback,omitempty"` // the bounce collector's state (Options.Feedback)
}

func (a *API) statusOf(acc *account.Account) accountStatus {
	s := accountStatus{Account: viewOf(acc.Cfg), Disabled: acc.Cfg.Disabled, Token: a.b.TokenStatus(acc)}
	if acc.Sessions() != nil {
		st := acc.SessionStats()
		s.Sessions.Open, s.Sessions.Busy, s.Sessions.Opened, s.Sessions.Cap = st.Open, st.Busy, st.Opened, st.Cap
	}
	s.InFlight = acc.Inflight()
	s.Messages.Sent, s.Messages.Failed, s.Messages.Ambiguous = acc.Sent.Load(), acc.Failed.Load(), acc.Ambiguous.Load()
	if lr, ok := acc.LastReply(); ok {
		s.LastReply = &lr
	}
	if b, ok := a.b.Budget(acc); ok {
		s.Budgets = &b
	}
	if a.o.Feedback != nil {
		if f, ok := a.o.Feedback(acc); ok {
			s.Feedback = f
		}
	}
	return s
}

func (a *API) find(w http.ResponseWriter, r *http.Request) *account.Account {
	name := r.PathValue("email")
	acc := a.b.Registry().Find(name)
	if acc == nil {
		fail(w, http.StatusNotFound, "no account "+name)
	}
	return acc
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request) {
	if acc := a.find(w, r); acc != nil {
		writeJSON(w, http.StatusOK, map[string]any{"success": true, "account": a.statusOf(acc)})
	}
}

// patchAccount sets any accounts.json field of one account, overrides
// included; a null value removes the key.
func (a *API) patchAccount(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("email")
	var fields map[string]any
	if !decode(w, r, &fields) {
		return
	}
	if len(fields) == 0 {
		fail(w, http.StatusBadRequest, "no fields to change")
		return
	}
	g := given{}
	for _, k := range []string{"client_secret", "refresh_token"} {
		if s, ok := fields[k].(string); ok {
			g.give(s)
		}
	}
	err := a.edit(g, func(f *config.AccountsFile) error { return f.Set(f.Find(name), fields) })
	switch {
	case errors.Is(err, config.ErrNoAccount):
		fail(w, http.StatusNotFound, "no account "+name)
		return
	case errors.Is(err, errRedirect):
		fail(w, http.StatusForbidden, err.Error())
		return
	case err != nil:
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	email := name
	if e, ok := fields["email"].(string); ok {
		email = e
	}
	acc := a.b.Registry().Find(email)
	if acc == nil {
		fail(w, http.StatusInternalServerError, "account saved but not loaded")
		return
	}
	a.log.Info("admin: account changed", "account", acc.Cfg.ID, "fields", len(fields))
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "account": a.statusOf(acc)})
}

func (a *API) setDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	name := r.PathValue("email")
	err := a.SetDisabled(name, disabled) // console.go
	switch {
	case errors.Is(err, config.ErrNoAccount):
		fail(w, http.StatusNotFound, "no account "+name)
	case err != nil:
		fail(w, http.StatusBadRequest, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"success": true, "email": name, "disabled": disabled})
	}
}

func (a *API) disableAccount(w http.ResponseWriter, r *http.Request) { a.setDisabled(w, r, true) }
func (a *API) enableAccount(w http.ResponseWriter, r *http.Request)  { a.setDisabled(w, r, false) }

func (a *API) refreshAccount(w http.ResponseWriter, r *http.Request) {
	acc := a.find(w, r)
	if acc == nil {
		return
	}
	if err := a.b.RefreshToken(r.Context(), acc); err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]any{"success": false, "error": err.Error(), "token": a.b.TokenStatus(acc)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "token": a.b.TokenStatus(acc)})
}

func (a *API) reload(w http.ResponseWriter, _ *http.Request) {
	a.writeMu.Lock()
	err := a.b.Reload()
	a.writeMu.Unlock()
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "total_accounts": len(a.b.Registry().All())})
}

func (a *API) status(w http.ResponseWriter, _ *http.Request) {
	snap := a.b.Snapshot()
	var enabled int
	var inflight, open, busy int64
	states := map[string]int{}
	for _, acc := range a.b.Registry().All() {
		if !acc.Cfg.Disabled {
			enabled++
		}
		inflight += acc.Inflight()
		st := acc.SessionStats()
		open += st.Open
		busy += st.Busy
		states[a.b.TokenStatus(acc).State]++
	}
	now := a.o.Now()
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "version": a.o.Version, "started_at": a.started.UTC().Format(time.RFC3339),
		"uptime_seconds": int64(now.Sub(a.started).Seconds()),
		"config_path":    snap.ConfigPath, "accounts_path": snap.AccountsPath,
		"total_accounts": len(a.b.Registry().All()), "enabled_accounts": enabled,
		"messages_in_flight": inflight, "upstream_sessions_open": open, "upstream_sessions_busy": busy,
		"tokens_by_state": states,
	})
}

// budgets lists the accounts near (80%) or at a budget, or cooling down.
func (a *API) budgets(w http.ResponseWriter, _ *http.Request) {
	type row struct {
		Email     string `json:"email"`
		AccountID string `json:"account_id"`
		quota.Status
	}
	rows := []row{}
	for _, acc := range a.b.Registry().All() {
		if st, ok := a.b.Budget(acc); ok && st.NearOrAtLimit {
			rows = append(rows, row{Email: acc.Cfg.Email, AccountID: acc.Cfg.ID, Status: st})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "count": len(rows), "accounts": rows})
}

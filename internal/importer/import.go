package importer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// DefaultConcurrency is the number of verifications Import runs at once
// when Options.Concurrency is zero: enough to get through thousands of
// accounts in minutes, few enough not to look like an attack to a token
// endpoint (the admin API's batch route uses the same number).
const DefaultConcurrency = 8

// Check verifies one record before it is saved; it may update the record
// (a rotated refresh token). Import calls it for different records at once.
type Check func(ctx context.Context, r *config.AccountRecord) error

// Store saves records: FileStore or AdminStore.
type Store interface {
	// Add saves recs and returns one error per record, nil for a record
	// saved. A record that exists (same email or account_id) fails unless
	// overwrite is set. progress is called with the number of records
	// handled so far, as the work goes.
	Add(ctx context.Context, recs []config.AccountRecord, overwrite bool, progress func(n int)) []error
}

// Options configure Import.
type Options struct {
	// Provider is the provider of domains Guess does not know; "" means
	// gmail (Google Workspace).
	Provider string
	// Overwrite updates accounts that exist instead of failing them: the
	// record's fields replace theirs, their other keys stay.
	Overwrite bool
	// Check, when set, runs for each record before saving (--verify with
	// FileStore; AdminStore verifies on the server instead).
	Check Check
	// Concurrency bounds the Checks running at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// Progress, when set, makes the display of a step with total records;
	// it may return nil for none.
	Progress func(label string, total int) *Progress
}

// Result is the outcome of one line.
type Result struct {
	Line  int
	Email string
	Err   error // nil: saved
}

// Import completes, checks and saves the records of lines, and returns one
// Result per line, in order. Lines that failed to parse, records that fail
// Normalise, duplicates inside lines (same email or account_id as an
// earlier line) and failed Checks are not saved; the rest go to store in
// one Add. Error texts never contain the record's secrets.
func Import(ctx context.Context, lines []Line, store Store, o Options) []Result {
	res := make([]Result, len(lines))
	recs := make([]config.AccountRecord, len(lines))
	seen := map[string]int{}
	for i, l := range lines {
		res[i] = Result{Line: l.N, Email: l.Record.Email, Err: l.Err}
		recs[i] = l.Record
		if res[i].Err != nil {
			continue
		}
		if err := Normalise(&recs[i], o.Provider); err != nil {
			res[i].Err = err
			continue
		}
		for _, k := range []string{"email " + strings.ToLower(recs[i].Email), "account_id " + recs[i].AccountID} {
			if first, dup := seen[k]; dup {
				res[i].Err = fmt.Errorf("same %s as line %d", strings.Fields(k)[0], first)
				break
			}
		}
		if res[i].Err == nil {
			seen["email "+strings.ToLower(recs[i].Email)] = l.N
			seen["account_id "+recs[i].AccountID] = l.N
		}
	}
	if o.Check != nil {
		check(ctx, recs, res, o)
	}

	var todo []int
	for i := range res {
		if res[i].Err == nil {
			todo = append(todo, i)
		}
	}
	if len(todo) > 0 {
		batch := make([]config.AccountRecord, len(todo))
		for j, i := range todo {
			batch[j] = recs[i]
		}
		var bar *Progress
		if o.Progress != nil {
			bar = o.Progress("saving", len(todo))
		}
		done := 0
		errs := store.Add(ctx, batch, o.Overwrite, func(n int) { bar.Add(n - done); done = n })
		bar.Finish()
		for j, i := range todo {
			res[i].Err = errs[j]
		}
	}
	for i := range res {
		if res[i].Err != nil {
			res[i].Err = errors.New(redact(&recs[i], res[i].Err.Error()))
		}
	}
	return res
}

// check runs o.Check on the records still good, o.Concurrency at a time.
func check(ctx context.Context, recs []config.AccountRecord, res []Result, o Options) {
	n := o.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	var idx []int
	for i := range res {
		if res[i].Err == nil {
			idx = append(idx, i)
		}
	}
	var bar *Progress
	if o.Progress != nil && len(idx) > 0 {
		bar = o.Progress("verifying", len(idx))
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, n)
	for _, i := range idx {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := ctx.Err(); err != nil {
				res[i].Err = fmt.Errorf("not verified: %w", err)
			} else if err := o.Check(ctx, &recs[i]); err != nil {
				res[i].Err = err
			}
			bar.Add(1)
		}()
	}
	wg.Wait()
	bar.Finish()
}

// TokenCheck returns a Check that makes one real token request for a
// record, as the proxy would: the record's oauth_token_url or its
// provider's from providers, within timeout, through client. A nil client
// means one client shared by every check (connections are reused across
// thousands of records), with the proxy settings of the environment, that
// never follows a redirect: a 307 would re-post the refresh token
// elsewhere. A refresh token the endpoint rotates (Microsoft) replaces the
// record's, so what is saved is the token that still works.
func TokenCheck(providers map[string]config.Provider, timeout time.Duration, client *http.Client) Check {
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = DefaultConcurrency
		client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return func(ctx context.Context, r *config.AccountRecord) error {
		url := r.TokenURL
		if url == "" {
			url = providers[r.Provider].TokenURL
		}
		var rotated secret.String
		src, err := token.NewSource(token.Config{
			Account: r.AccountID, TokenURL: url, ClientID: r.ClientID, ClientSecret: r.ClientSecret,
			RefreshToken: r.RefreshToken, Timeout: timeout, HTTPClient: client,
			OnRotate: func(n secret.String) { rotated = n },
		})
		if err != nil {
			return fmt.Errorf("verification failed: %w", err)
		}
		if _, err := src.Token(ctx); err != nil {
			return fmt.Errorf("verification failed: %w", err)
		}
		if !rotated.Empty() {
			r.RefreshToken = rotated
		}
		return nil
	}
}

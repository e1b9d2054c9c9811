package importer

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/adminclient"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// AdminStore saves records through a running proxy's admin API: POST
// /admin/accounts for one record, /admin/accounts/batch in chunks of
// adminclient.MaxBatch for more. The proxy validates, writes and reloads;
// with Verify it first makes a token request per account itself.
type AdminStore struct {
	Client *adminclient.Client
	Verify bool
}

// Add implements Store. A refusal of a whole request (wrong token, proxy
// down) fails that chunk and every later one.
func (s AdminStore) Add(ctx context.Context, recs []config.AccountRecord, overwrite bool, progress func(n int)) []error {
	errs := make([]error, len(recs))
	body := func(r *config.AccountRecord) map[string]any {
		m := r.Fields()
		// The proxy generates account_id and vmta_name the same way when
		// they are absent, and keeps an existing record's on an overwrite.
		for _, k := range r.Generated {
			if k == "account_id" || k == "vmta_name" {
				delete(m, k)
			}
		}
		m["verify"], m["overwrite"] = s.Verify, overwrite
		return m
	}
	if len(recs) == 1 {
		err := s.Client.Add(ctx, body(&recs[0]))
		var ae *adminclient.Error
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			err = ErrExists
		}
		errs[0] = err
		if progress != nil {
			progress(1)
		}
		return errs
	}
	var fatal error
	for start := 0; start < len(recs); start += adminclient.MaxBatch {
		end := min(start+adminclient.MaxBatch, len(recs))
		if fatal != nil {
			for i := start; i < end; i++ {
				errs[i] = fatal
			}
			continue
		}
		bodies := make([]map[string]any, 0, end-start)
		for i := start; i < end; i++ {
			bodies = append(bodies, body(&recs[i]))
		}
		res, err := s.Client.AddBatch(ctx, bodies)
		if err != nil {
			fatal = err
			for i := start; i < end; i++ {
				errs[i] = err
			}
			continue
		}
		failed := map[string]string{}
		for _, f := range res.Failed {
			failed[strings.ToLower(f.Email)] = f.Error
		}
		for i := start; i < end; i++ {
			msg, bad := failed[strings.ToLower(recs[i].Email)]
			switch {
			case bad && strings.HasPrefix(msg, "account already exists"):
				errs[i] = ErrExists
			case bad:
				errs[i] = errors.New(msg)
			case res.Status != http.StatusOK && res.Status != http.StatusPartialContent:
				errs[i] = errors.New("not added")
			}
		}
		if progress != nil {
			progress(end)
		}
	}
	return errs
}

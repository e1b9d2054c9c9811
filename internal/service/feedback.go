package service

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/feedback"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/imap"
)

// Files of the bounce collector in the state directory, beside
// budgets.json.
const (
	feedbackStateFile = "feedback-state.json"
	feedbackQueueDir  = "feedback-webhook"
)

// bounceCoolDown is how long a bounce-rate cool-down lasts: until the
// operator resumes the account (POST …/feedback/resume), in effect.
const bounceCoolDown = 10 * 365 * 24 * time.Hour

// feedbackRuntime is the bounce collector and its webhook (issue 15).
type feedbackRuntime struct {
	c  *feedback.Collector
	wh *feedback.Webhook // nil without webhook_url
}

// setupFeedback builds the collector from the feedback block in force at
// start (its outputs stay until a restart; which accounts are read
// follows reloads). Nothing runs until startFeedback.
func (s *Service) setupFeedback() error {
	f := s.Snap.Global.Feedback
	dir := filepath.Dir(s.budgetPath())
	var outs []feedback.Output
	if f.JSONLFile != "" {
		outs = append(outs, feedback.NewJSONL(f.JSONLFile))
	}
	if f.CSVFile != "" {
		outs = append(outs, feedback.NewCSV(f.CSVFile))
	}
	rt := &feedbackRuntime{}
	if f.WebhookURL != "" {
		wh, err := feedback.NewWebhook(feedback.WebhookOptions{URL: f.WebhookURL, Secret: f.WebhookSecret,
			Dir: filepath.Join(dir, feedbackQueueDir), Logger: s.log})
		if err != nil {
			return err
		}
		rt.wh = wh
		outs = append(outs, wh)
	}
	c, err := feedback.New(feedback.Options{
		Mailboxes: s.feedbackMailboxes, Dialer: imap.Dialer{TLS: s.opts.UpstreamTLS},
		StatePath: filepath.Join(dir, feedbackStateFile), Folder: f.Mailbox, MoveTo: f.MoveTo,
		Interval: f.Interval, MaxConcurrent: f.MaxConcurrent, Outputs: outs,
		Threshold: f.BounceRate, MinRecipients: f.BounceRateMinRecipients,
		Metrics: feedback.NewMetrics(s.metrics), Logger: s.log,
	})
	if err != nil {
		return err
	}
	rt.c = c
	s.fb = rt
	return nil
}

// feedbackMailboxes lists the opted-in accounts of the configuration in
// force.
func (s *Service) feedbackMailboxes() []feedback.Mailbox {
	f := s.Snapshot().Global.Feedback
	var out []feedback.Mailbox
	for _, a := range s.Reg.All() {
		if a.Cfg.Disabled || !f.On(a.Cfg) || a.State.Tokens() == nil {
			continue
		}
		out = append(out, s.mailboxOf(a, f.IMAPAddr(a.Cfg)))
	}
	return out
}

func (s *Service) mailboxOf(a *account.Account, addr string) feedback.Mailbox {
	id := a.Cfg.ID
	return feedback.Mailbox{
		ID: id, Email: a.Cfg.Email, VMTA: a.Cfg.VMTAName, Addr: addr,
		Token: func(ctx context.Context) (string, error) {
			src := a.State.Tokens()
			t, err := src.Token(ctx)
			if err != nil {
				return "", err
			}
			return t.Access.Reveal(), nil
		},
		// The account as it is now, after any reload.
		Accepted: func() (int, bool) { return s.current(id, a).Budget().Accepted() },
		CoolDown: func(cause string) bool { return s.current(id, a).Budget().CoolDown(cause, bounceCoolDown) },
		Resume:   func() { s.current(id, a).Budget().Clear() },
	}
}

// current is account id as configured now, or a when it is gone.
func (s *Service) current(id string, a *account.Account) *account.Account {
	if n := s.Reg.Lookup(id); n != nil {
		return n
	}
	return a
}

// startFeedback runs the collector and the webhook until the returned
// function is called, which waits for them.
func (s *Service) startFeedback() (stop func()) {
	if s.fb == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.fb.c.Run(ctx) }()
	if s.fb.wh != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.fb.wh.Run(ctx) }()
	}
	return func() { cancel(); wg.Wait() }
}

// feedbackStatus is an account's collection state for its admin status.
func (s *Service) feedbackStatus(a *account.Account) (any, bool) {
	if s.fb == nil || !s.Snapshot().Global.Feedback.On(a.Cfg) {
		return nil, false
	}
	st, ok := s.fb.c.Status(a.Cfg.ID)
	if !ok {
		return map[string]any{"enabled": true, "read": false}, true
	}
	return st, true
}

// feedbackRoutes adds the collector's admin routes.
func (s *Service) feedbackRoutes(api *admin.API) {
	api.HandleAccount("GET /admin/accounts/{email}/feedback", func(_ *http.Request, a *account.Account) (int, any) {
		st, ok := s.feedbackStatus(a)
		if !ok {
			return http.StatusNotFound, map[string]any{"success": false, "error": "feedback is not enabled for " + a.Cfg.Email}
		}
		return http.StatusOK, map[string]any{"success": true, "feedback": st}
	})
	api.HandleAccount("POST /admin/accounts/{email}/feedback/resume", func(_ *http.Request, a *account.Account) (int, any) {
		if s.fb == nil {
			return http.StatusNotFound, map[string]any{"success": false, "error": "feedback is not enabled"}
		}
		if err := s.fb.c.Resume(s.mailboxOf(a, "")); err != nil {
			s.log.Warn("feedback: resume not saved", "account", a.Cfg.ID, "err", err)
			return http.StatusInternalServerError, map[string]any{"success": false, "error": "resume not saved; see the log"}
		}
		s.log.Info("feedback: account resumed by the operator", "account", a.Cfg.ID)
		return http.StatusOK, map[string]any{"success": true}
	})
}

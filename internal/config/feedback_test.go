package config_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// TestLoad_feedback: the feedback block's opt-in, servers and outputs,
// and the errors that name the key.
func TestLoad_feedback(t *testing.T) {
	t.Parallel()
	accts := accountsJSON(t, gmailRecord("g", "g@example.com"), outlookRecord("o", "o@example.com"))
	tests := []struct {
		name    string
		config  string
		check   func(t *testing.T, dir string, f config.Feedback, s *config.Snapshot)
		wantErr string
	}{
		{name: "defaults: off", config: `{}`, check: func(t *testing.T, _ string, f config.Feedback, s *config.Snapshot) {
			if f.On(s.Accounts[0]) || f.On(s.Accounts[1]) || f.Interval != 5*time.Minute || f.BounceRate != 0.05 ||
				f.IMAPAddr(s.Accounts[0]) != "imap.gmail.com:993" || f.IMAPAddr(s.Accounts[1]) != "outlook.office365.com:993" {
				t.Errorf("defaults %+v", f)
			}
		}},
		{name: "opt-in by provider and account, exclusion", config: `{"feedback": {"providers": ["gmail"], "accounts": ["o"], "exclude_accounts": ["g"],
			"imap_servers": {"gmail": "127.0.0.1:1993"}, "jsonl_file": "b.jsonl", "move_to": "Bounces", "interval_seconds": 60,
			"webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "k"}}`,
			check: func(t *testing.T, dir string, f config.Feedback, s *config.Snapshot) {
				if f.On(s.Accounts[0]) || !f.On(s.Accounts[1]) || f.IMAPAddr(s.Accounts[0]) != "127.0.0.1:1993" ||
					f.JSONLFile != filepath.Join(dir, "b.jsonl") || f.MoveTo != "Bounces" || f.Interval != time.Minute || f.WebhookSecret.Reveal() != "k" {
					t.Errorf("feedback %+v", f)
				}
			}},
		{name: "webhook without secret", config: `{"feedback": {"webhook_url": "http://127.0.0.1:9/"}}`, wantErr: "feedback.webhook_secret"},
		{name: "interval too short", config: `{"feedback": {"interval_seconds": 1}}`, wantErr: "feedback.interval_seconds"},
		{name: "providers not a list", config: `{"feedback": {"providers": "gmail"}}`, wantErr: "feedback.providers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, map[string]string{"accounts.json": accts, "config.json": tc.config})
			snap, _, err := loadDir(t, dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d, _ := filepath.Abs(dir)
			tc.check(t, d, snap.Global.Feedback, snap)
		})
	}
}

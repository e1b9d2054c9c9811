package config

import (
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Feedback is the top-level "feedback" block (issue 15, docs/feedback.md):
// which accounts' mailboxes the bounce collector reads, where, how often,
// where the bounces go, and the bounce-rate protection. Off (no provider
// or account opted in) by default.
type Feedback struct {
	Providers []string // "providers": every account of these providers opts in
	Accounts  []string // "accounts": these account_ids opt in, whatever their provider
	Exclude   []string // "exclude_accounts": these account_ids never do
	// IMAP is "imap_servers": host:port (implicit TLS) by provider name.
	// Built-in gmail imap.gmail.com:993, outlook outlook.office365.com:993.
	IMAP map[string]string
	// Mailbox is "mailbox", where reports arrive; default "INBOX".
	Mailbox string
	// MoveTo is "move_to": the folder (Gmail: label) processed reports
	// go to, created when missing; "" leaves them where they are.
	MoveTo string
	// Interval is "interval_seconds" between two reads of one mailbox,
	// ±20% jitter; default 300 s, at least 10 s.
	Interval time.Duration
	// MaxConcurrent is "max_concurrent": mailboxes read at once; default 4.
	MaxConcurrent int
	// JSONLFile is "jsonl_file": one JSON line per bounced recipient
	// appended ("" = none). CSVFile is "csv_file": PowerMTA accounting
	// records of type b ("" = none). Relative to config.json.
	JSONLFile, CSVFile string
	// WebhookURL is "webhook_url" ("" = none); WebhookSecret is
	// "webhook_secret", the HMAC-SHA256 key of the signature header.
	WebhookURL    string
	WebhookSecret secret.String
	// BounceRate is "bounce_rate_threshold": hard bounces ÷ recipients
	// accepted over the last 24 h above which the account is cooled down
	// until the operator resumes it; default 0.05 (docs/feedback.md),
	// 0 = off. BounceRateMinRecipients ("bounce_rate_min_recipients",
	// default 100) is the fewest recipients the rate is judged on.
	BounceRate              float64
	BounceRateMinRecipients int
}

// defaultFeedback is the block when config.json has none.
func defaultFeedback() Feedback {
	return Feedback{
		IMAP:                    map[string]string{ProviderGmail: "imap.gmail.com:993", ProviderOutlook: "outlook.office365.com:993"},
		Mailbox:                 "INBOX",
		Interval:                5 * time.Minute,
		MaxConcurrent:           4,
		BounceRate:              0.05,
		BounceRateMinRecipients: 100,
	}
}

// On reports whether a's mailbox is read.
func (f Feedback) On(a *Account) bool {
	if slices.Contains(f.Exclude, a.ID) {
		return false
	}
	return slices.Contains(f.Accounts, a.ID) || slices.Contains(f.Providers, blockName(a.Provider))
}

// IMAPAddr is the IMAP server of a's provider; "" when none is known.
func (f Feedback) IMAPAddr(a *Account) string { return f.IMAP[blockName(a.Provider)] }

func parseFeedback(o *object, f *Feedback, dir string) {
	if o == nil {
		return
	}
	f.Providers = o.strings("providers")
	f.Accounts = o.strings("accounts")
	f.Exclude = o.strings("exclude_accounts")
	if m := o.child("imap_servers"); m != nil {
		for name := range m.m {
			if isComment(name) {
				continue
			}
			var addr string
			if m.str(name, &addr) {
				f.IMAP[name] = addr
			}
		}
	}
	o.str("mailbox", &f.Mailbox)
	o.str("move_to", &f.MoveTo)
	for _, k := range []struct {
		key string
		v   string
	}{{"mailbox", f.Mailbox}, {"move_to", f.MoveTo}} {
		if strings.ContainsAny(k.v, "\r\n\x00") {
			o.errorf(k.key, "must not contain line breaks")
		}
	}
	o.seconds("interval_seconds", true, &f.Interval)
	if f.Interval < 10*time.Second {
		o.errorf("interval_seconds", "must be at least 10 (polling a mailbox more often gains nothing)")
	}
	o.count("max_concurrent", 1, &f.MaxConcurrent)
	for _, k := range []struct {
		key string
		dst *string
	}{{"jsonl_file", &f.JSONLFile}, {"csv_file", &f.CSVFile}} {
		if o.str(k.key, k.dst) && !filepath.IsAbs(*k.dst) {
			*k.dst = filepath.Join(dir, *k.dst)
		}
	}
	o.str("webhook_url", &f.WebhookURL)
	var s string
	if o.str("webhook_secret", &s) {
		f.WebhookSecret = secret.New(s)
	}
	if f.WebhookURL != "" && f.WebhookSecret.Empty() {
		o.errorf("webhook_secret", "is required with webhook_url: the receiver checks the signature")
	}
	o.fraction("bounce_rate_threshold", &f.BounceRate)
	o.count("bounce_rate_min_recipients", 1, &f.BounceRateMinRecipients)
	o.finish()
}

// strings reads an array of strings; absent is nil.
func (o *object) strings(key string) []string {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	arr, isArr := v.([]any)
	if !isArr {
		o.errorf(key, "must be an array of strings, not %s", jsonType(v))
		return nil
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, isStr := e.(string)
		if !isStr {
			o.errorf(key, "must be an array of strings, not one holding %s", jsonType(e))
			return nil
		}
		out = append(out, s)
	}
	return out
}

package provider_test

import (
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/provider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    reply.Reply
		want provider.Kind
	}{
		{"gmail daily", reply.New(550, "5.4.5", "Daily user sending limit exceeded. For more information..."), provider.DailyQuota},
		{"microsoft quota", reply.New(554, "5.2.0", "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message"), provider.DailyQuota},
		{"microsoft other 5.2.0", reply.New(554, "5.2.0", "STOREDRV.Submission.Exception:SomethingElse"), provider.Normal},
		{"send as denied stays permanent", reply.New(554, "5.2.252", "SendAsDenied; sender@example.com not allowed to send as x"), provider.Normal},
		{"microsoft concurrency", reply.New(432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded"), provider.Concurrency},
		{"gmail logins", reply.New(454, "4.7.0", "Too many login attempts, please try again later."), provider.LoginRate},
		{"gmail parallel", reply.New(421, "4.3.0", "Temporary System Problem.  Try again later"), provider.Concurrency},
		{"rate 421", reply.New(421, "4.7.0", "Try again later, closing connection. (EHLO) unusual rate"), provider.Rate},
		{"rate 450", reply.New(450, "4.2.1", "The user you are trying to contact is receiving mail too quickly"), provider.Rate},
		{"unknown user", reply.New(550, "5.1.1", "The email account that you tried to reach does not exist."), provider.Normal},
		{"ok", reply.New(250, "2.0.0", "OK"), provider.Normal},
	}
	for _, tc := range tests {
		if got := provider.Classify(tc.r).Kind; got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestClassifySession(t *testing.T) {
	t.Parallel()
	if k := provider.ClassifySession(reply.New(421, "4.4.5", "Server busy, try again later")).Kind; k != provider.Concurrency {
		t.Errorf("421 at session open: %v", k)
	}
	for _, r := range []reply.Reply{
		reply.New(421, "4.7.0", "Try again later, closing connection. (EHLO)"), // Gmail
		reply.New(421, "4.7.0", "Our system has detected an unusual rate of unsolicited mail"),
		reply.New(421, "4.7.0", "Message rate limit exceeded"),
	} {
		if k := provider.ClassifySession(r).Kind; k != provider.Rate {
			t.Errorf("%v at session open: %v, want rate limited", r, k)
		}
	}
	if k := provider.ClassifySession(reply.New(421, "4.7.0", "go away")).Kind; k != provider.Concurrency {
		t.Errorf("421 4.7.0 without a rate text at session open: %v", k)
	}
	if k := provider.ClassifySession(reply.New(421, "4.3.0", "Temporary System Problem.  Try again later")).Kind; k != provider.Concurrency {
		t.Errorf("Gmail's parallel-sessions 421 4.3.0 at session open: %v", k)
	}
	if k := provider.ClassifySession(reply.New(454, "4.7.0", "Too many login attempts, please try again later.")).Kind; k != provider.LoginRate {
		t.Errorf("454 4.7.0 at session open: %v", k)
	}
	if k := provider.Classify(reply.New(421, "4.4.5", "Server busy, try again later")).Kind; k != provider.Normal {
		t.Errorf("421 elsewhere: %v", k)
	}
	if k := provider.ClassifySession(reply.New(535, "5.7.8", "Username and Password not accepted")).Kind; k != provider.Normal {
		t.Errorf("535: %v", k)
	}
}

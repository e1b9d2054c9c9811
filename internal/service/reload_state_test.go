package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
)

// waitFor polls cond until it holds or 5 s pass (sessions close in the
// background).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// openedTotal scrapes upstream_sessions_opened_total.
func openedTotal(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.svc.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "upstream_sessions_opened_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no upstream_sessions_opened_total")
	return 0
}

// TestReload_warmSessionsSurviveSettingsEditNotEndpointEdit: a vmta_name
// edit keeps alice's warm session, its counters and the sessions-opened
// metric; an endpoint edit drains the old session and opens a new one,
// and the counters still only grow (issue 11, part 2 and 2b).
func TestReload_warmSessionsSurviveSettingsEditNotEndpointEdit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	send := func() {
		c := e.dial(t)
		c.authPlain(userA, password, "235")
		c.deliver(userA, "r@example.net", "Subject: x\r\n\r\nx\r\n")
		c.cmd("QUIT", "221")
	}
	send()
	before := e.svc.Reg.Lookup(userA)
	if st := before.SessionStats(); st.Opened != 1 || st.Open != 1 || before.Sent.Load() != 1 {
		t.Fatalf("after one message: %+v, sent %d", st, before.Sent.Load())
	}
	logins := e.fp.Stats().Logins

	accts := cloneAccts(e.accts)
	accts[0]["vmta_name"] = "vmta-edited"
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	after := e.svc.Reg.Lookup(userA)
	if after == before || after.State != before.State {
		t.Fatal("vmta_name edit: want a new configuration over the same state")
	}
	if st := after.SessionStats(); st.Open != 1 || st.Opened != 1 || after.Sent.Load() != 1 || openedTotal(t, e) != 1 {
		t.Fatalf("vmta_name edit lost state: %+v, sent %d, metric %v", st, after.Sent.Load(), openedTotal(t, e))
	}
	send()
	if st := after.SessionStats(); st.Opened != 1 || e.fp.Stats().Logins != logins || after.Sent.Load() != 2 {
		t.Fatalf("after a vmta_name edit the warm session was not reused: %+v, logins %d → %d, sent %d",
			st, logins, e.fp.Stats().Logins, after.Sent.Load())
	}

	// The same provider under another name: a new endpoint as the
	// account sees it.
	accts[0]["oauth_endpoint"] = strings.Replace(e.fp.SMTPAddr(), "127.0.0.1", "localhost", 1)
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	moved := e.svc.Reg.Lookup(userA)
	waitFor(t, "the old endpoint's session to close", func() bool { return moved.SessionStats().Open == 0 })
	if moved.SessionStats().Opened != 1 || openedTotal(t, e) != 1 || moved.Sent.Load() != 2 {
		t.Fatalf("endpoint edit: opened %d, metric %v, sent %d; want 1, 1, 2", moved.SessionStats().Opened, openedTotal(t, e), moved.Sent.Load())
	}
	send()
	if st := moved.SessionStats(); st.Opened != 2 || st.Open != 1 || moved.Sent.Load() != 3 || e.fp.Stats().Logins != logins+1 || openedTotal(t, e) != 2 {
		t.Fatalf("after the endpoint edit: %+v, sent %d, logins %d; want a second session", st, moved.Sent.Load(), e.fp.Stats().Logins)
	}
}

// TestRevokedOrDisabledAccountClosesWarmSessions: an account whose token
// is revoked, or which is disabled, closes its warm sessions at once
// instead of sending over them until they age out (issue 11, part 2b).
func TestRevokedOrDisabledAccountClosesWarmSessions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		act  func(t *testing.T, e *env, a *account.Account)
	}{
		{"revoked", func(t *testing.T, e *env, a *account.Account) {
			e.fp.Revoke(userA)
			// What the background renewal does when the token is due.
			if err := e.svc.RefreshToken(context.Background(), a); err == nil {
				t.Fatal("refresh of a revoked account succeeded")
			}
		}},
		{"disabled", func(t *testing.T, e *env, _ *account.Account) {
			accts := cloneAccts(e.accts)
			accts[0]["disabled"] = true
			e.writeAccounts(t, accts)
			if err := e.svc.Reload(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			c.deliver(userA, "r@example.net", "Subject: x\r\n\r\nx\r\n")
			a := e.svc.Reg.Lookup(userA)
			if a.SessionStats().Open != 1 {
				t.Fatal("no warm session")
			}
			tc.act(t, e, a)
			st := e.svc.Reg.Find(userA)
			waitFor(t, "the warm session to close", func() bool { return st.SessionStats().Open == 0 })
			// The connection that authenticated before gets no 250 over
			// an old session.
			c.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
			if got := c.expect(""); !strings.HasPrefix(got, "4") {
				t.Errorf("MAIL after %s = %q, want a 4xx", tc.name, got)
			}
			if n := e.fp.Stats().Messages; n != 1 {
				t.Errorf("provider has %d messages, want 1", n)
			}
		})
	}
}

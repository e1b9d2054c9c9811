package account_test

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	base := config.Account{
		ID: "a", Email: "a@example.com", Provider: "gmail", ClientID: "c", ClientSecret: secret.New("s"),
		RefreshToken: secret.New("r"), TokenURL: "https://t.example/token", SMTPAddr: "smtp.example:587",
		TLS: upstream.TLSStartTLS, Mechanism: upstream.MechXOAUTH2, VMTAName: "v1", SMTPPassword: secret.New("pw"),
		MaxConcurrentMessages: 10, Pool: config.Pool{MaxConnectionsPerAccount: 5},
	}
	tests := []struct {
		name string
		edit func(*config.Account)
		want account.Edit
	}{
		{"nothing", func(*config.Account) {}, account.Unchanged},
		{"vmta_name", func(c *config.Account) { c.VMTAName = "v2" }, account.SettingsOnly},
		{"smtp_password", func(c *config.Account) { c.SMTPPassword = secret.New("pw2") }, account.SettingsOnly},
		{"max_concurrent_messages", func(c *config.Account) { c.MaxConcurrentMessages = 3 }, account.SettingsOnly},
		{"budgets", func(c *config.Account) { c.RateLimiting.MessagesPerDay = 5 }, account.SettingsOnly},
		{"endpoint", func(c *config.Account) { c.SMTPAddr = "other.example:587" }, account.SessionsOnly},
		{"tls mode", func(c *config.Account) { c.TLS = upstream.TLSImplicit }, account.SessionsOnly},
		{"mechanism", func(c *config.Account) { c.Mechanism = upstream.MechOAUTHBEARER }, account.SessionsOnly},
		{"source address", func(c *config.Account) { c.IPAddress = netip.MustParseAddr("192.0.2.1") }, account.SessionsOnly},
		{"pool size", func(c *config.Account) { c.Pool.MaxConnectionsPerAccount = 2 }, account.SessionsOnly},
		{"disabled", func(c *config.Account) { c.Disabled = true }, account.SessionsOnly},
		{"client secret", func(c *config.Account) { c.ClientSecret = secret.New("s2") }, account.Credentials},
		{"refresh token", func(c *config.Account) { c.RefreshToken = secret.New("r2") }, account.Credentials},
		{"token url", func(c *config.Account) { c.TokenURL = "https://t2.example/token" }, account.Credentials},
		{"email (the AUTH identity)", func(c *config.Account) { c.Email = "b@example.com" }, account.Credentials},
		{"auth type", func(c *config.Account) { c.AuthType = token.AuthClientCredentials }, account.Credentials},
		{"endpoint and vmta_name", func(c *config.Account) { c.SMTPAddr, c.VMTAName = "o.example:587", "v2" }, account.SessionsOnly},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			old, edited := base, base
			tc.edit(&edited)
			if got := account.Classify(&old, &edited); got != tc.want {
				t.Errorf("Classify = %d, want %d", got, tc.want)
			}
		})
	}
}

// fakeSessions counts what the registry does to an account's sessions.
type fakeSessions struct {
	opened  int64
	drained atomic.Int32
	closed  atomic.Bool
}

func (f *fakeSessions) Lease(context.Context, time.Duration) (account.Lease, error) {
	return nil, errors.New("no leases here")
}
func (f *fakeSessions) LeaseNew(ctx context.Context, d time.Duration) (account.Lease, error) {
	return f.Lease(ctx, d)
}
func (f *fakeSessions) Drain(string) { f.drained.Add(1) }
func (f *fakeSessions) Sweep()       {}
func (f *fakeSessions) Close()       { f.closed.Store(true) }
func (f *fakeSessions) Stats() account.SessionStats {
	return account.SessionStats{Opened: f.opened, Cap: 1}
}

// builder hands out fakeSessions with 7 sessions opened each.
type builder struct{ built []*fakeSessions }

func (b *builder) build(*config.Account, *account.State, *token.Source) (account.Runtime, error) {
	f := &fakeSessions{opened: 7}
	b.built = append(b.built, f)
	return account.Runtime{Sessions: f}, nil
}

func snapOf(cs ...config.Account) *config.Snapshot {
	s := &config.Snapshot{}
	for i := range cs {
		s.Accounts = append(s.Accounts, &cs[i])
	}
	return s
}

// TestReplace_keepsWhatDidNotChange: a vmta_name edit keeps the account's
// warm sessions and counters; an endpoint edit replaces the sessions and
// keeps the counters; removing it keeps the sessions it opened in the
// total. Counters never fall (issue 11: upstream_sessions_opened_total
// fell from 7 to 5 after a vmta_name PATCH).
func TestReplace_keepsWhatDidNotChange(t *testing.T) {
	t.Parallel()
	a := config.Account{ID: "a", Email: "a@example.com", SMTPAddr: "one.example:587", VMTAName: "v1"}
	b := &builder{}
	r, err := account.NewRegistry(snapOf(a), b.build, account.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := r.Lookup("a")
	first.Sent.Add(3)
	warm := b.built[0]

	a.VMTAName = "v2"
	ch, err := r.Replace(snapOf(a), b.build)
	if err != nil {
		t.Fatal(err)
	}
	second := r.Lookup("a")
	switch {
	case len(ch.Changed) != 1 || len(ch.Reopened) != 0:
		t.Errorf("vmta_name edit: change %+v, want changed and not reopened", ch)
	case second.State != first.State || second.Sessions() != account.Sessions(warm) || warm.closed.Load():
		t.Error("vmta_name edit replaced the account's state or sessions")
	case second.Sent.Load() != 3 || second.SessionStats().Opened != 7:
		t.Errorf("vmta_name edit: sent %d, opened %d; want 3, 7", second.Sent.Load(), second.SessionStats().Opened)
	case !first.Removed() || second.Removed() || second.Cfg.VMTAName != "v2":
		t.Error("the old configuration is not retired for the new one")
	}

	a.SMTPAddr = "two.example:587"
	if ch, err = r.Replace(snapOf(a), b.build); err != nil {
		t.Fatal(err)
	}
	third := r.Lookup("a")
	switch {
	case len(ch.Reopened) != 1:
		t.Errorf("endpoint edit: change %+v, want reopened", ch)
	case third.State != first.State || third.Sessions() == account.Sessions(warm):
		t.Error("endpoint edit kept the old sessions")
	case third.Sent.Load() != 3 || third.SessionStats().Opened != 14:
		t.Errorf("endpoint edit: sent %d, opened %d; want 3, 14", third.Sent.Load(), third.SessionStats().Opened)
	}
	r.Close() // waits for the old sessions' close
	if !warm.closed.Load() {
		t.Error("endpoint edit did not close the old sessions")
	}

	if ch, err = r.Replace(snapOf(), b.build); err != nil || len(ch.Removed) != 1 {
		t.Fatalf("remove: %+v, %v", ch, err)
	}
	if got := r.OpenedGone(); got != 14 {
		t.Errorf("removed account's sessions opened = %d, want 14", got)
	}
}

// TestReplace_buildFailureChangesNothing: a runtime that cannot be built
// leaves the running account set as it was.
func TestReplace_buildFailureChangesNothing(t *testing.T) {
	t.Parallel()
	a := config.Account{ID: "a", Email: "a@example.com", SMTPAddr: "one.example:587"}
	b := &builder{}
	r, err := account.NewRegistry(snapOf(a), b.build, account.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before := r.Lookup("a")
	a.SMTPAddr = "two.example:587"
	n := config.Account{ID: "n", Email: "n@example.com"}
	boom := func(c *config.Account, st *account.State, tk *token.Source) (account.Runtime, error) {
		if c.ID == "n" {
			return account.Runtime{}, errors.New("boom")
		}
		return b.build(c, st, tk)
	}
	if _, err := r.Replace(snapOf(a, n), boom); err == nil {
		t.Fatal("Replace succeeded with a failing build")
	}
	if r.Lookup("a") != before || before.Removed() || before.Sessions() != account.Sessions(b.built[0]) {
		t.Error("a failed Replace changed the running account")
	}
	if !b.built[1].closed.Load() {
		t.Error("the runtime built before the failure was not closed")
	}
}

// TestReplace_inFlightCountsAcrossAnEdit: messages in flight under the old
// configuration count against the new max_concurrent_messages.
func TestReplace_inFlightCountsAcrossAnEdit(t *testing.T) {
	t.Parallel()
	a := config.Account{ID: "a", Email: "a@example.com", MaxConcurrentMessages: 5}
	b := &builder{}
	r, err := account.NewRegistry(snapOf(a), b.build, account.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	old := r.Lookup("a")
	if !old.Acquire() {
		t.Fatal("first message refused")
	}
	a.MaxConcurrentMessages = 1
	if _, err := r.Replace(snapOf(a), b.build); err != nil {
		t.Fatal(err)
	}
	edited := r.Lookup("a")
	if edited.Acquire() {
		t.Error("a second message admitted at max_concurrent_messages 1 while one is in flight")
	}
	old.Done()
	if !edited.Acquire() {
		t.Error("the slot of the message that finished was not given back")
	}
}

// TestBudget_boundToTheAccount: an account's Budget admits against its own
// limits, starts cool-downs only with rate_limiting on, and keeps its
// counts across an edit (the quota.Budget keeps them by account_id).
func TestBudget_boundToTheAccount(t *testing.T) {
	t.Parallel()
	book := quota.NewBook(nil)
	on := config.Account{ID: "on", Email: "on@example.com", RateLimiting: config.RateLimiting{Enabled: true, MessagesPerDay: 1}}
	off := config.Account{ID: "off", Email: "off@example.com", RateLimiting: config.RateLimiting{MessagesPerDay: 1}}
	r, err := account.NewRegistry(snapOf(on, off), noRuntime, account.Options{Budget: book})
	if err != nil {
		t.Fatal(err)
	}
	tk, d := r.Lookup("on").Budget().Admit(t.Context())
	if d != nil {
		t.Fatalf("first message refused: %v", d)
	}
	tk.Done(true)
	on.VMTAName = "edited"
	if _, err := r.Replace(snapOf(on, off), noRuntime); err != nil {
		t.Fatal(err)
	}
	if _, d := r.Lookup("on").Budget().Admit(t.Context()); d == nil {
		t.Error("the daily budget of 1 admitted a second message after an edit")
	}
	for range 3 {
		tk, d := r.Lookup("off").Budget().Admit(t.Context())
		if d != nil {
			t.Fatal("an account with rate_limiting off was refused")
		}
		tk.Done(true)
	}
	if r.Lookup("off").Budget().CoolDown("550 5.4.5 quota", time.Hour) {
		t.Error("a cool-down started with rate_limiting off")
	}
	if st, ok := r.Lookup("on").Budget().Status(); !ok || len(st.Budgets) == 0 {
		t.Errorf("Status = %+v, %v", st, ok)
	}
}

// TestCurrent: a client authenticated as an account goes on as the
// edited account while what it proved at AUTH holds there; otherwise it
// must log in again.
func TestCurrent(t *testing.T) {
	t.Parallel()
	base := config.Account{ID: "a", Email: "a@example.com", SMTPAddr: "one.example:587", VMTAName: "v1",
		SMTPPassword: secret.New("pw")}
	cases := []struct {
		name string
		edit func(c *config.Account) []config.Account // the next set
		same bool                                     // Current gives the edited account
	}{
		{"unchanged", func(c *config.Account) []config.Account { return []config.Account{*c} }, true},
		{"vmta_name", func(c *config.Account) []config.Account { c.VMTAName = "v2"; return []config.Account{*c} }, true},
		{"endpoint", func(c *config.Account) []config.Account { c.SMTPAddr = "two.example:587"; return []config.Account{*c} }, true},
		{"password", func(c *config.Account) []config.Account {
			c.SMTPPassword = secret.New("pw2")
			return []config.Account{*c}
		}, false},
		{"email", func(c *config.Account) []config.Account { c.Email = "b@example.com"; return []config.Account{*c} }, false},
		{"disabled", func(c *config.Account) []config.Account { c.Disabled = true; return []config.Account{*c} }, false},
		{"removed", func(*config.Account) []config.Account { return nil }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &builder{}
			r, err := account.NewRegistry(snapOf(base), b.build, account.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			old := r.Find("a")
			c := base
			if _, err := r.Replace(snapOf(tc.edit(&c)...), b.build); err != nil {
				t.Fatal(err)
			}
			got := r.Current(old)
			switch {
			case tc.same && (got == nil || got != r.Find("a")):
				t.Errorf("Current = %v, want the edited account", got)
			case !tc.same && got != nil:
				t.Errorf("Current = %v, want nil: the client must log in again", got.Cfg)
			}
		})
	}
}

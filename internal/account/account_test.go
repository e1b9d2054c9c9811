package account_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

func registry(t *testing.T) *account.Registry {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	snap := &config.Snapshot{Accounts: []*config.Account{
		{ID: "hashed", Email: "Hashed@Example.com", SMTPPassword: secret.New(string(h)), PasswordHashed: true, MaxConcurrentMessages: 2},
		{ID: "plain", Email: "plain@example.com", SMTPPassword: secret.New("pw")},
		{ID: "open", Email: "open@example.com"},
	}}
	r, err := account.NewRegistry(snap, noRuntime, account.Options{
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	r := registry(t)
	inside := netip.MustParseAddr("10.1.2.3")
	outside := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name, user, pass string
		from             netip.Addr
		wantID           string // "" = refused
	}{
		{"hashed ok", "hashed@example.com", "pw", outside, "hashed"},
		{"hashed ok again (cached)", "HASHED@EXAMPLE.COM", "pw", outside, "hashed"},
		{"hashed wrong after a success", "hashed@example.com", "pw2", outside, ""},
		{"by account id", "hashed", "pw", outside, "hashed"},
		{"plain ok", "plain@example.com", "pw", outside, "plain"},
		{"plain wrong", "plain@example.com", "p", outside, ""},
		{"plain prefix", "plain@example.com", "pwx", outside, ""},
		{"no password, trusted", "open@example.com", "whatever", inside, "open"},
		{"no password, IPv4-mapped trusted", "open@example.com", "", netip.MustParseAddr("::ffff:10.0.0.1"), "open"},
		{"no password, untrusted", "open@example.com", "whatever", outside, ""},
		{"unknown", "nobody@example.com", "pw", inside, ""},
	}
	for _, tc := range tests {
		a, err := r.Authenticate(context.Background(), tc.user, tc.pass, tc.from)
		switch {
		case tc.wantID == "" && !errors.Is(err, account.ErrBadCredentials):
			t.Errorf("%s: err = %v, want ErrBadCredentials", tc.name, err)
		case tc.wantID != "" && (err != nil || a.Cfg.ID != tc.wantID):
			t.Errorf("%s: got %v, %v; want %s", tc.name, a, err, tc.wantID)
		}
	}
}

func TestAcquireCap(t *testing.T) {
	t.Parallel()
	a := registry(t).Lookup("hashed")
	for i := 0; i < 2; i++ {
		if !a.Acquire() {
			t.Fatalf("message %d refused below cap 2", i+1)
		}
	}
	if a.Acquire() {
		t.Fatal("third message admitted over cap 2")
	}
	a.Done()
	if !a.Acquire() {
		t.Fatal("slot not given back")
	}
}

// TestAuthKey: failures count by account, whichever name is used; any
// other name counts as itself, in any case (issue 16, finding 2).
func TestAuthKey(t *testing.T) {
	t.Parallel()
	r := registry(t)
	for _, tc := range []struct{ a, b string }{
		{"hashed@example.com", "hashed"},
		{"HASHED@example.com", "Hashed"},
		{"nobody@example.com", "NOBODY@example.com"},
	} {
		if ka, kb := r.AuthKey(tc.a), r.AuthKey(tc.b); ka != kb {
			t.Errorf("AuthKey(%q) = %q, AuthKey(%q) = %q: want one key", tc.a, ka, tc.b, kb)
		}
	}
	if r.AuthKey("plain") == r.AuthKey("hashed") || r.AuthKey("hashed") == r.AuthKey("name:hashed") {
		t.Error("two accounts, or an account and a name, share a key")
	}
}

// noRuntime builds accounts with no token source and no sessions.
func noRuntime(*config.Account, *account.State, *token.Source) (account.Runtime, error) {
	return account.Runtime{}, nil
}

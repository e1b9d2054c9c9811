package account_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
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
	r, err := account.NewRegistry(snap, func(c *config.Account) (*account.Account, error) {
		return &account.Account{Cfg: c}, nil
	}, account.Options{
		Trusted:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		FailDelay: -1,
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

// A failed AUTH is answered only after FailDelay, an unknown user as late
// as a wrong password (no timing tells them apart), a success at once; a
// client that hangs up ends the wait. Only lower bounds are asserted.
func TestAuthenticate_failureDelay(t *testing.T) {
	t.Parallel()
	const delay = 150 * time.Millisecond
	snap := &config.Snapshot{Accounts: []*config.Account{{ID: "plain", Email: "plain@example.com", SMTPPassword: secret.New("pw")}}}
	r, err := account.NewRegistry(snap, func(c *config.Account) (*account.Account, error) {
		return &account.Account{Cfg: c}, nil
	}, account.Options{FailDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	from := netip.MustParseAddr("192.0.2.1")
	for _, user := range []string{"plain@example.com", "nobody@example.com"} {
		start := time.Now()
		if _, err := r.Authenticate(context.Background(), user, "wrong", from); !errors.Is(err, account.ErrBadCredentials) {
			t.Fatalf("%s: %v", user, err)
		}
		if took := time.Since(start); took < delay {
			t.Errorf("%s: refused after %v, before the %v failure delay", user, took, delay)
		}
	}
	if _, err := r.Authenticate(context.Background(), "plain@example.com", "pw", from); err != nil {
		t.Fatalf("right password: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Authenticate(ctx, "plain@example.com", "wrong", from); !errors.Is(err, account.ErrBadCredentials) {
		t.Errorf("cancelled: %v", err)
	}
}

package account

import (
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// TestDummyHashFollowsTheAccounts: the hash a failure without one of its
// own is checked against has the cost of the configured hashes, after a
// reload too, so an unknown user costs what a wrong password costs (issue
// 16, finding 1: the dummy was cost 10, hash-password's cost 12).
func TestDummyHashFollowsTheAccounts(t *testing.T) {
	t.Parallel()
	snapOf := func(costs ...int) *config.Snapshot {
		s := &config.Snapshot{Accounts: []*config.Account{{ID: "plain", Email: "plain@example.com", SMTPPassword: secret.New("pw")}}}
		for i, c := range costs {
			h, err := bcrypt.GenerateFromPassword([]byte("pw"), c)
			if err != nil {
				t.Fatal(err)
			}
			id := string(rune('a' + i))
			s.Accounts = append(s.Accounts, &config.Account{ID: id, Email: id + "@example.com",
				SMTPPassword: secret.New(string(h)), PasswordHashed: true})
		}
		return s
	}
	build := func(c *config.Account) (*Account, error) { return &Account{Cfg: c}, nil }
	cost := func(r *Registry) int {
		c, err := bcrypt.Cost(*r.dummy.Load())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	r, err := NewRegistry(snapOf(4, 6, 5), build, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c := cost(r); c != 6 {
		t.Errorf("dummy cost %d, want 6 (the highest configured)", c)
	}
	if _, err := r.Replace(snapOf(5), build); err != nil {
		t.Fatal(err)
	}
	if c := cost(r); c != 5 {
		t.Errorf("after a reload: dummy cost %d, want 5", c)
	}
	if _, err := r.Replace(snapOf(), build); err != nil {
		t.Fatal(err)
	}
	if c := cost(r); c != bcrypt.MinCost {
		t.Errorf("without hashes: dummy cost %d, want bcrypt's least %d", c, bcrypt.MinCost)
	}
}

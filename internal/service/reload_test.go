package service_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
)

func cloneAccts(in []map[string]any) []map[string]any {
	out := make([]map[string]any, len(in))
	for i, m := range in {
		out[i] = maps.Clone(m)
	}
	return out
}

func TestReload_addChangeRemove(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	// A client of the plain account authenticates before the reload.
	early := e.dial(t)
	early.authPlain(userPlain, password, "235")

	accts := cloneAccts(e.accts)
	e.fp.AddAccount(fakeprovider.Account{Email: "new@example.com", ClientID: "cid", ClientSecret: "csecret", RefreshToken: "rt-new"})
	added := maps.Clone(accts[0])
	added["account_id"], added["email"], added["refresh_token"] = "new", "new@example.com", "rt-new"
	accts = append(accts, added)
	accts[3]["smtp_password"] = "changed-" + password // plain: password changed
	accts = append(accts[:1], accts[2:]...)           // nopw removed
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}

	c := e.dial(t)
	c.authPlain("new@example.com", password, "235")
	c.send("MAIL FROM:<new@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("x\r\n.\r\n")
	c.expect("250")

	e.dial(t).authPlain(userNoPW, "x", "535 5.7.8")                  // removed
	e.dial(t).authPlain(userPlain, password, "535 5.7.8")            // old password
	e.dial(t).authPlain(userPlain, "changed-"+password, "235 2.7.0") // new password
	// The connection that authenticated under the old settings must log in again.
	early.cmd("MAIL FROM:<"+userPlain+">", "451 4.7.1")
}

func TestReload_invalidFileChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	accts := cloneAccts(e.accts)
	accts[0]["oauth_token_url"] = "http://token.example.com/" // not loopback: refused
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err == nil {
		t.Fatal("invalid accounts file accepted")
	}
	e.dial(t).authPlain(userA, password, "235")
}

// TestReload_racingTrafficLosesNothing reloads again and again while
// messages flow; every 250 is at the provider exactly once, and nothing
// fails for the accounts that did not change.
func TestReload_racingTrafficLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := loadgen.Dial(ctx, e.addr, 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Quit()
			if err := c.Auth(userA, password); err != nil {
				t.Error(err)
				return
			}
			for i := 0; ctx.Err() == nil && i < 200; i++ {
				res, err := c.Send(userA, []string{fmt.Sprintf("r%d@example.net", i)}, []byte("x\r\n"))
				if err != nil || !res.OK() {
					t.Errorf("send during reloads: %v %+v", err, res)
					return
				}
				sent.Add(1)
			}
		}()
	}
	// Toggle another account in and out while traffic flows.
	for i := 0; i < 20 && ctx.Err() == nil; i++ {
		accts := cloneAccts(e.accts)
		if i%2 == 0 {
			accts = append(accts[:3], accts[4:]...)
		}
		e.writeAccounts(t, accts)
		if err := e.svc.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if st := e.fp.Stats(); st.Messages != sent.Load() {
		t.Fatalf("client got %d 250s, provider has %d messages", sent.Load(), st.Messages)
	}
	if sent.Load() == 0 {
		t.Fatal("no traffic flowed")
	}
}

// TestReload_editKeepsAuthenticatedClients: an edit that leaves what a
// client proved at AUTH alone (here vmta_name and the message cap) does
// not make its open connection log in again: PowerMTA's sessions go on
// sending, under the new settings. Changing the password, the email, or
// disabling the account still does (TestReload_addChangeRemove,
// TestAdmin_patchDisableEnable).
func TestReload_editKeepsAuthenticatedClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.dial(t)
	c.authPlain(userA, password, "235")
	c.deliver(userA, "r@example.net", "before\r\n")

	accts := cloneAccts(e.accts)
	accts[0]["vmta_name"] = "vmta-renamed"
	accts[0]["max_concurrent_messages"] = 7
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	c.deliver(userA, "r@example.net", "after\r\n")

	accts[0]["email"] = "alice2@example.com"
	e.writeAccounts(t, accts)
	if err := e.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	c.cmd("MAIL FROM:<"+userA+">", "451 4.7.1")
	if st := e.fp.Stats(); st.Messages != 2 {
		t.Errorf("provider has %d messages, want 2", st.Messages)
	}
}

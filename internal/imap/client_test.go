package imap_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeimap"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/imap"
)

const user = "box@example.com"

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestClient_session runs the collector's session against the fake, with
// and without MOVE: authenticate, select, search after a UID, fetch,
// move; a wrong token is ErrAuth.
func TestClient_session(t *testing.T) {
	t.Parallel()
	for _, noMove := range []bool{false, true} {
		t.Run(map[bool]string{false: "MOVE", true: "COPY+EXPUNGE"}[noMove], func(t *testing.T) {
			t.Parallel()
			srv, err := fakeimap.Start(fakeimap.Options{NoMove: noMove, UIDValidity: 7,
				Check: func(u, tok string) bool { return u == user && tok == "good" }})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			one := srv.Deliver(user, []byte("Subject: one\r\n\r\nfirst\r\n"))
			two := srv.Deliver(user, []byte("Subject: two\r\n\r\nsecond {5}\r\n"))

			bad, err := imap.Dialer{}.Dial(ctx(t), srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if err := bad.AuthXOAUTH2(ctx(t), user, "wrong"); !errors.Is(err, imap.ErrAuth) {
				t.Errorf("wrong token: %v, want ErrAuth", err)
			}
			bad.Close()

			c, err := imap.Dialer{}.Dial(ctx(t), srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.AuthXOAUTH2(ctx(t), user, "good"); err != nil {
				t.Fatal(err)
			}
			mb, err := c.Select(ctx(t), "INBOX")
			if err != nil || mb.UIDValidity != 7 || mb.Exists != 2 {
				t.Fatalf("Select = %+v, %v", mb, err)
			}
			uids, err := c.SearchSince(ctx(t), one)
			if err != nil || len(uids) != 1 || uids[0] != two {
				t.Fatalf("SearchSince(%d) = %v, %v", one, uids, err)
			}
			if uids, _ := c.SearchSince(ctx(t), two); len(uids) != 0 {
				t.Errorf("SearchSince(last) = %v: n:* must not give back the last message", uids)
			}
			raw, err := c.FetchRaw(ctx(t), two)
			if err != nil || string(raw) != "Subject: two\r\n\r\nsecond {5}\r\n" {
				t.Fatalf("FetchRaw = %q, %v", raw, err)
			}
			if _, err := c.FetchRaw(ctx(t), 99); !errors.Is(err, imap.ErrGone) {
				t.Errorf("FetchRaw(99) = %v, want ErrGone", err)
			}
			if err := c.Create(ctx(t), "Bounces"); err != nil {
				t.Fatal(err)
			}
			if err := c.Create(ctx(t), "Bounces"); err != nil {
				t.Errorf("second Create: %v", err)
			}
			if err := c.Move(ctx(t), two, "Bounces"); err != nil {
				t.Fatal(err)
			}
			if srv.Count(user, "INBOX") != 1 || srv.Count(user, "Bounces") != 1 {
				t.Errorf("after the move: INBOX %d, Bounces %d", srv.Count(user, "INBOX"), srv.Count(user, "Bounces"))
			}
			if err := c.Logout(ctx(t)); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestClient_cancel: a cancelled context ends a call waiting on a
// server that does not answer.
func TestClient_cancel(t *testing.T) {
	t.Parallel()
	srv, err := fakeimap.Start(fakeimap.Options{Check: func(string, string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := imap.Dialer{}.Dial(ctx(t), srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.AuthXOAUTH2(cx, user, "x"); err == nil {
		t.Error("AuthXOAUTH2 with a cancelled context succeeded")
	}
}

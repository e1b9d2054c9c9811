package oauthflow_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/oauthflow"
)

// TestLoopback: the browser comes back to the loopback listener, or the
// user pastes the address it ended on; a pasted answer with another state
// is refused.
func TestLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		paste   bool
		edit    func(loc string) string
		wantErr error
	}{
		{name: "browser reaches the loopback listener"},
		{name: "address pasted", paste: true},
		{name: "pasted address with another state", paste: true, edit: func(l string) string { return strings.Replace(l, "state=", "state=x", 1) }, wantErr: oauthflow.ErrStateMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startFake(t)
			pr, pw := io.Pipe()
			defer pw.Close()
			browser := make(chan error, 1)
			show := func(authURL string) {
				go func() {
					loc, err := fakeprovider.Consent(ctx(t), authURL, true, "")
					if err == nil && tc.edit != nil {
						loc = tc.edit(loc)
					}
					switch {
					case err != nil:
					case tc.paste:
						_, err = io.WriteString(pw, "\n"+loc+"\n")
					default:
						var resp *http.Response
						if resp, err = http.Get(loc); err == nil {
							resp.Body.Close()
						}
					}
					browser <- err
				}()
			}
			g, err := appFor(p, oauthflow.Gmail).Loopback(ctx(t), "loop@example.com", oauthflow.Prompt{Show: show, Paste: pr})
			if berr := <-browser; berr != nil {
				t.Fatal(berr)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Loopback = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || g.Email != "loop@example.com" || g.RefreshToken.Reveal() != p.RefreshToken("loop@example.com") {
				t.Fatalf("Loopback = %q, %v", g.Email, err)
			}
		})
	}
}

// TestLoopback_cancelled: nobody answers; the context ends the wait.
func TestLoopback_cancelled(t *testing.T) {
	t.Parallel()
	p := startFake(t)
	c, cancel := context.WithCancel(t.Context())
	_, err := appFor(p, oauthflow.Outlook).Loopback(c, "", oauthflow.Prompt{Show: func(string) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
}

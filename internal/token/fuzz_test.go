package token_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// roundTripper answers every request with a fixed status and body.
type roundTripper struct {
	status int
	body   []byte
}

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: rt.status,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(bytes.NewReader(rt.body)),
		Request:    r,
	}, nil
}

// FuzzTokenResponse feeds arbitrary token-endpoint responses through a
// Source: parsing must never panic, a success must yield a usable token, and
// no error may carry the planted refresh token or client secret.
func FuzzTokenResponse(f *testing.F) {
	f.Add(200, []byte(`{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}`))
	f.Add(200, []byte(`{"access_token":"EwB","expires_in":"3600","refresh_token":"M.C5"}`))
	f.Add(200, []byte(`{"access_token":"a","expires_in":-1}`))
	f.Add(200, []byte(`{"access_token":"a","expires_in":"1e400"}`))
	f.Add(200, []byte(`{"error":"invalid_grant"}`))
	f.Add(400, []byte(`{"error":"invalid_grant","error_description":"AADSTS700082: expired"}`))
	f.Add(401, []byte(`{"error":["x"]}`))
	f.Add(503, []byte("<html>\x00\xff\xfe FUZZ-refresh-token</html>"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		status = 200 + (status%400+400)%400 // 200..599
		const rt, cs = "FUZZ-refresh-token", "FUZZ-client-secret"
		now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		s, err := token.NewSource(token.Config{
			Account:      "fuzz",
			TokenURL:     "https://token.invalid/token",
			ClientID:     "cid",
			ClientSecret: secret.New(cs),
			RefreshToken: secret.New(rt),
			HTTPClient:   &http.Client{Transport: roundTripper{status: status, body: body}},
			Now:          func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Token(t.Context())
		if err == nil {
			if tok.Access.Empty() || !tok.Expiry.After(now) || tok.Expiry.After(now.Add(24*time.Hour)) {
				t.Fatalf("bad token from %d %q: expiry %v, empty %v", status, body, tok.Expiry, tok.Access.Empty())
			}
			return
		}
		var te *token.Error
		if !errors.As(err, &te) {
			t.Fatalf("err %v is not *token.Error", err)
		}
		if te.Final && status != 400 && status != 401 {
			t.Fatalf("Final for status %d", status)
		}
		if msg := err.Error(); strings.Contains(msg, rt) || strings.Contains(msg, cs) {
			t.Fatalf("secret in error: %q", msg)
		}
	})
}

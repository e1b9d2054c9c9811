package oauthflow_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/oauthflow"
)

func decode(t *testing.T, r *http.Response, v any) {
	t.Helper()
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func jwt(claims string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".sig"
}

func TestParseCallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in        string
		code, state, ec string
		bad             bool
	}{
		{name: "full loopback URL", in: "http://127.0.0.1:53123/callback?code=4%2F0Ab&state=xyz&scope=a", code: "4/0Ab", state: "xyz"},
		{name: "query only with spaces", in: "  ?state=s&code=c\n", code: "c", state: "s"},
		{name: "bare query", in: "code=c&state=s#frag", code: "c", state: "s"},
		{name: "error", in: "http://127.0.0.1/cb?error=access_denied&state=s", state: "s", ec: "access_denied"},
		{name: "no state", in: "http://127.0.0.1/cb?code=c", bad: true},
		{name: "empty", in: "", bad: true},
		{name: "bad escape", in: "?code=%zz&state=s", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cb, err := oauthflow.ParseCallback(tc.in)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, want bad %v", err, tc.bad)
			}
			if !tc.bad && (cb.Code != tc.code || cb.State != tc.state || cb.Error != tc.ec) {
				t.Errorf("got %+v", cb)
			}
		})
	}
}

func TestEmailFromIDToken(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, tok, want string }{
		{name: "google email", tok: jwt(`{"email":"a@example.com","email_verified":true}`), want: "a@example.com"},
		{name: "microsoft preferred_username", tok: jwt(`{"preferred_username":"b@contoso.com","name":"B"}`), want: "b@contoso.com"},
		{name: "upn", tok: jwt(`{"upn":"c@contoso.com"}`), want: "c@contoso.com"},
		{name: "username not an address", tok: jwt(`{"preferred_username":"bob"}`)},
		{name: "display-name form refused", tok: jwt(`{"email":"Eve <e@x.com>"}`)},
		{name: "not a JWT", tok: "abc"},
		{name: "bad base64", tok: "a.!!!.c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := oauthflow.EmailFromIDToken(tc.tok)
			if got != tc.want || (err == nil) != (tc.want != "") {
				t.Errorf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func FuzzParseCallback(f *testing.F) {
	f.Add("http://127.0.0.1:5/cb?code=c&state=s")
	f.Add("?error=access_denied&error_description=no")
	f.Add("code=%zz")
	f.Fuzz(func(t *testing.T, s string) {
		cb, err := oauthflow.ParseCallback(s)
		if err == nil && cb.Error == "" && (cb.Code == "" || cb.State == "") {
			t.Fatalf("accepted %q without code and state: %+v", s, cb)
		}
	})
}

func FuzzEmailFromIDToken(f *testing.F) {
	f.Add(jwt(`{"email":"a@example.com"}`))
	f.Add(jwt(`{"preferred_username":"x"}`))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := oauthflow.EmailFromIDToken(s)
		if err == nil && !containsAt(e) {
			t.Fatalf("%q gave %q without @", s, e)
		}
	})
}

func containsAt(s string) bool {
	for _, r := range s {
		if r == '@' {
			return true
		}
	}
	return false
}

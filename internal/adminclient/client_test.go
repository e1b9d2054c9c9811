package adminclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/adminclient"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// seen is what the server saw of the last request.
type seen struct {
	mu                 sync.Mutex
	method, path, auth string
}

func (s *seen) get() (method, path, auth string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.method, s.path, s.auth
}

// fixed answers every request with status and body, and records the last one.
func fixed(t *testing.T, status int, body string, last *seen) *adminclient.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		last.mu.Lock()
		last.method, last.path, last.auth = r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization")
		last.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := adminclient.New(srv.URL+"/", secret.New("tok"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAddBatch_answers(t *testing.T) {
	t.Parallel()
	one := []map[string]any{{"email": "a@x"}}
	for _, tc := range []struct {
		name   string
		status int
		body   string
		added  int
		failed int
		err    string
	}{
		{"all added", 200, `{"success":true,"added_count":1}`, 1, 0, ""},
		{"partial", 206, `{"success":"partial","added_count":1,"failed_count":1,"failed_accounts":[{"email":"b@x","error":"verification failed"}]}`, 1, 1, ""},
		{"all invalid", 400, `{"success":false,"error":"no account added","failed_accounts":[{"email":"a@x","error":"client_id: required"}]}`, 0, 1, ""},
		{"all exist", 409, `{"success":false,"failed_accounts":[{"email":"a@x","error":"account already exists"}]}`, 0, 1, ""},
		{"request refused", 400, `{"success":false,"error":"a batch holds 1 to 100 accounts"}`, 0, 0, "400 a batch holds 1 to 100 accounts"},
		{"wrong token", 401, `{"success":false,"error":"missing or wrong bearer token"}`, 0, 0, "401 missing or wrong bearer token"},
		{"not JSON", 502, `<html>bad gateway</html>`, 0, 0, "502 Bad Gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var last seen
			c := fixed(t, tc.status, tc.body, &last)
			res, err := c.AddBatch(context.Background(), one)
			if tc.err != "" {
				var ae *adminclient.Error
				if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want *Error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.status || res.Added != tc.added || len(res.Failed) != tc.failed {
				t.Errorf("got %+v", res)
			}
			if _, path, auth := last.get(); path != "/admin/accounts/batch" || auth != "Bearer tok" {
				t.Errorf("request %s %s", path, auth)
			}
		})
	}
}

func TestNew_refusesWhatCannotWork(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, token, err string
	}{
		{"127.0.0.1:9090", "t", "want http://HOST:PORT"},
		{"ftp://h", "t", "want http://HOST:PORT"},
		{"http://127.0.0.1:9090", "", "no admin token"},
	} {
		if _, err := adminclient.New(tc.url, secret.New(tc.token)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("New(%q): err = %v, want %q", tc.url, err, tc.err)
		}
	}
	if _, err := (&adminclient.Client{URL: "http://x"}).AddBatch(context.Background(), make([]map[string]any, 101)); err == nil {
		t.Error("a batch of 101 was sent")
	}
}

func TestRemove_escapesTheName(t *testing.T) {
	t.Parallel()
	var last seen
	c := fixed(t, 200, `{"success":true}`, &last)
	if err := c.Remove(context.Background(), "a b/c@x"); err != nil {
		t.Fatal(err)
	}
	if method, path, _ := last.get(); method != "DELETE" || path != "/admin/accounts/a%20b%2Fc@x" {
		t.Errorf("%s %s", method, path)
	}
}

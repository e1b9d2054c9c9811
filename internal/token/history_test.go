package token_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestHistory: each token request leaves one event, newest first, at most
// eight; a failure with the provider's error, never a secret.
func TestHistory(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3, 8, 11} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, k int) {
				if k%2 == 0 {
					reply(w, http.StatusServiceUnavailable, `{"error":"temporarily_unavailable"}`)
					return
				}
				okToken(w, r, k)
			})
			c := newClock()
			s := mustSource(t, baseConfig(e, c))
			for range n {
				tok, _ := s.Cached()
				s.Refresh(context.Background(), tok.Access)
				s.Reset() // no backoff between the requests
			}
			h := s.History()
			if len(h) != min(n, 8) {
				t.Fatalf("%d events, want %d", len(h), min(n, 8))
			}
			for i, ev := range h {
				k := n - i // the request's 1-based number
				if ok := k%2 == 1; ev.OK != ok || (ok && ev.Detail != "") || (!ok && !strings.Contains(ev.Detail, "temporarily_unavailable")) {
					t.Errorf("event %d (request %d): %+v", i, k, ev)
				}
				if strings.Contains(ev.Detail, "rt-1") || strings.Contains(ev.Detail, "cs-1") || strings.Contains(ev.Detail, "at-") {
					t.Errorf("event %d shows a secret: %q", i, ev.Detail)
				}
			}
		})
	}
}

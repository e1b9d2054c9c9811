package feedback_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/feedback"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// receiver is a webhook endpoint that is down (503) for its first
// `down` requests, checks the signature and counts each bounce id.
type receiver struct {
	mu      sync.Mutex
	down    int
	calls   int
	badSig  int
	seen    map[string]int
	key     secret.String
	arrived chan struct{}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls <= r.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if req.Header.Get(feedback.SignatureHeader) != feedback.Sign(r.key, body) {
		r.badSig++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p struct{ Bounces []feedback.Bounce }
	if err := json.Unmarshal(body, &p); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, b := range p.Bounces {
		r.seen[b.ID]++
	}
	select {
	case r.arrived <- struct{}{}:
	default:
	}
}

// TestWebhook_downThenUpEachOnce: bounces queued while the receiver is
// down, and by a process that stopped before delivering, all arrive,
// each once, signed, after it comes back.
func TestWebhook_downThenUpEachOnce(t *testing.T) {
	t.Parallel()
	key := secret.New("hook-key")
	rcv := &receiver{down: 3, seen: map[string]int{}, key: key, arrived: make(chan struct{}, 1)}
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	dir := t.TempDir()
	opts := feedback.WebhookOptions{URL: hs.URL, Secret: key, Dir: dir, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}

	// A first process queues two reports and stops before delivering.
	w1, err := feedback.NewWebhook(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a/1/1/0", "a/1/2/0"} {
		if err := w1.Write(context.Background(), []feedback.Bounce{{ID: id, Recipient: "r@example.net"}}); err != nil {
			t.Fatal(err)
		}
	}
	// The next one delivers them, and one more, through three refusals.
	w2, err := feedback.NewWebhook(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Write(context.Background(), []feedback.Bounce{{ID: "a/1/3/0"}, {ID: "a/1/3/1"}}); err != nil {
		t.Fatal(err)
	}
	rc, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w2.Run(rc); close(done) }()
	deadline := time.Now().Add(time.Minute)
	for len(w2.Pending()) > 0 && time.Now().Before(deadline) {
		select {
		case <-rcv.arrived:
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	<-done
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(w2.Pending()) != 0 || len(rcv.seen) != 4 || rcv.badSig != 0 {
		t.Fatalf("pending %v, seen %v, bad signatures %d", w2.Pending(), rcv.seen, rcv.badSig)
	}
	for id, n := range rcv.seen {
		if n != 1 {
			t.Errorf("bounce %s delivered %d times", id, n)
		}
	}
	if rcv.calls < 3+3 {
		t.Errorf("%d calls: the refusals were not retried", rcv.calls)
	}
}

package feedback

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Header names of a webhook delivery.
const (
	// SignatureHeader is "sha256=" and the hex HMAC-SHA256 of the body
	// under the webhook secret.
	SignatureHeader = "X-Xoauth2-Proxy-Signature"
	// DeliveryHeader names the delivery (the queue file): the same on a
	// retry, so the receiver can drop a repeat.
	DeliveryHeader = "X-Xoauth2-Proxy-Delivery"
)

// Sign is the signature header's value for body.
func Sign(key secret.String, body []byte) string {
	m := hmac.New(sha256.New, []byte(key.Reveal()))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	URL    string
	Secret secret.String
	Dir    string       // the queue directory (created 0700)
	Client *http.Client // default: 30 s timeout
	// MinBackoff and MaxBackoff bound the wait after a failed delivery,
	// doubling from one to the other with jitter; default 1 s and 5 min.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Webhook posts each report's bounces to a URL, from a queue on disk: a
// report is queued (a file written atomically) before Write returns, and
// its file is removed only after the receiver answered 2xx, so nothing is
// dropped while the receiver is down or the proxy restarts. Run delivers,
// oldest first, one at a time.
type Webhook struct {
	o       WebhookOptions
	wake    chan struct{}
	seq     atomic.Uint64
	mu      sync.Mutex
	failing string // last delivery error, for the status; "" when fine
	sent    atomic.Int64
}

// NewWebhook prepares the queue directory.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(o.MinBackoff, 5*time.Minute)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("webhook queue: %w", err)
	}
	return &Webhook{o: o, wake: make(chan struct{}, 1)}, nil
}

// Write queues the bounces of one report.
func (w *Webhook) Write(_ context.Context, bs []Bounce) error {
	body, err := json.Marshal(struct {
		Bounces []Bounce `json:"bounces"`
	}{bs})
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%020d-%06d.json", time.Now().UnixNano(), w.seq.Add(1)%1_000_000)
	if err := safefile.WriteAtomic(filepath.Join(w.o.Dir, name), body, nil); err != nil {
		return fmt.Errorf("webhook queue: %w", err)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// Pending lists the queued deliveries, oldest first.
func (w *Webhook) Pending() []string {
	ents, err := os.ReadDir(w.o.Dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); e.Type().IsRegular() && strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Delivered counts the deliveries the receiver accepted since start.
func (w *Webhook) Delivered() int64 { return w.sent.Load() }

// Failing is the last delivery error, "" when the last one succeeded.
func (w *Webhook) Failing() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failing
}

// Run delivers the queue until ctx ends.
func (w *Webhook) Run(ctx context.Context) {
	backoff := w.o.MinBackoff
	for {
		queue := w.Pending()
		if len(queue) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
			case <-time.After(30 * time.Second): // files another process (or an operator) put back
			}
			continue
		}
		err := w.deliver(ctx, queue[0])
		w.mu.Lock()
		w.failing = ""
		if err != nil {
			w.failing = err.Error()
		}
		w.mu.Unlock()
		if err == nil {
			backoff = w.o.MinBackoff
			continue
		}
		if ctx.Err() != nil {
			return
		}
		w.o.Logger.Warn("webhook delivery failed; retrying", "delivery", queue[0], "in", backoff, "err", err)
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, w.o.MaxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// deliver posts one queued file and removes it after a 2xx.
func (w *Webhook) deliver(ctx context.Context, name string) error {
	path := filepath.Join(w.o.Dir, name)
	body, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(w.o.Secret, body))
	req.Header.Set(DeliveryHeader, strings.TrimSuffix(name, ".json"))
	resp, err := w.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	w.sent.Add(1)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s after delivery: %w", name, err)
	}
	return nil
}

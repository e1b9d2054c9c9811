package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// MaxBatch is the most accounts POST /admin/accounts/batch takes at once.
const MaxBatch = 100

// Client talks to one admin API.
type Client struct {
	// URL is the API's base, e.g. "http://127.0.0.1:9090".
	URL string
	// Token is the bearer token (--admin-token-file,
	// XOAUTH2_PROXY_ADMIN_TOKEN).
	Token secret.String
	// HTTP sends the requests; nil means a client with a 5 minute timeout
	// (a batch with verification makes up to 100 token requests).
	HTTP *http.Client
}

// New returns a client for base, checking that it is an http(s) URL.
func New(base string, token secret.String) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q: want http://HOST:PORT", base)
	}
	if token.Empty() {
		return nil, errors.New("no admin token: set --admin-token-file FILE or XOAUTH2_PROXY_ADMIN_TOKEN")
	}
	return &Client{URL: strings.TrimRight(base, "/"), Token: token}, nil
}

// Account is an account as the API shows it, never a secret; package
// admin writes this type, so the two cannot drift apart.
type Account struct {
	AccountID     string `json:"account_id"`
	Email         string `json:"email"`
	IPAddress     string `json:"ip_address"`
	VMTAName      string `json:"vmta_name"`
	Provider      string `json:"provider"`
	OAuthEndpoint string `json:"oauth_endpoint"`
	OAuthTokenURL string `json:"oauth_token_url"`
}

// Error is a refusal by the API: its status and its "error" text.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("admin API: %d %s", e.Status, e.Message) }

// Failure is one account a batch did not add.
type Failure struct {
	Email string `json:"email"`
	Error string `json:"error"`
}

// BatchResult is the answer to a batch: Status 200 (all added), 206 (some),
// 400 (none: invalid or unverified) or 409 (all exist).
type BatchResult struct {
	Status int
	Added  int
	Failed []Failure
}

// List returns every account (GET /admin/accounts).
func (c *Client) List(ctx context.Context) ([]Account, error) {
	var out struct {
		Accounts []Account `json:"accounts"`
	}
	if _, err := c.do(ctx, "GET", "/admin/accounts", nil, &out, http.StatusOK); err != nil {
		return nil, err
	}
	return out.Accounts, nil
}

// Add adds one account (POST /admin/accounts); body holds accounts.json
// keys plus "verify" and "overwrite".
func (c *Client) Add(ctx context.Context, body map[string]any) error {
	_, err := c.do(ctx, "POST", "/admin/accounts", body, nil, http.StatusOK)
	return err
}

// AddBatch adds up to MaxBatch accounts (POST /admin/accounts/batch). A
// refusal of the request as a whole (authentication, a malformed batch) is
// an *Error; per-account outcomes are in the BatchResult.
func (c *Client) AddBatch(ctx context.Context, bodies []map[string]any) (BatchResult, error) {
	if len(bodies) == 0 || len(bodies) > MaxBatch {
		return BatchResult{}, fmt.Errorf("a batch holds 1 to %d accounts, not %d", MaxBatch, len(bodies))
	}
	var out struct {
		Added  int       `json:"added_count"`
		Failed []Failure `json:"failed_accounts"`
		Error  string    `json:"error"`
	}
	status, err := c.do(ctx, "POST", "/admin/accounts/batch", bodies, &out,
		http.StatusOK, http.StatusPartialContent, http.StatusBadRequest, http.StatusConflict)
	if err != nil {
		return BatchResult{}, err
	}
	if status == http.StatusBadRequest && len(out.Failed) == 0 {
		// Not an account's fault: the request itself was refused.
		return BatchResult{}, &Error{Status: status, Message: out.Error}
	}
	return BatchResult{Status: status, Added: out.Added, Failed: out.Failed}, nil
}

// Remove deletes the account with this email or account_id
// (DELETE /admin/accounts/{email}).
func (c *Client) Remove(ctx context.Context, name string) error {
	_, err := c.do(ctx, "DELETE", "/admin/accounts/"+url.PathEscape(name), nil, nil, http.StatusOK)
	return err
}

// do sends one request and decodes the answer into out when its status is
// one of ok; any other status is an *Error with the API's message.
func (c *Client) do(ctx context.Context, method, path string, body, out any, ok ...int) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token.Reveal())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("admin API: read answer: %w", err)
	}
	for _, code := range ok {
		if resp.StatusCode == code {
			if out != nil {
				if err := json.Unmarshal(raw, out); err != nil {
					return 0, fmt.Errorf("admin API: %s %s: bad answer: %w", method, path, err)
				}
			}
			return resp.StatusCode, nil
		}
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(http.StatusText(resp.StatusCode))
	}
	return resp.StatusCode, &Error{Status: resp.StatusCode, Message: e.Error}
}

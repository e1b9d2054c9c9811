package token

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

const (
	// maxResponseBytes bounds how much of a token response is read. Real
	// responses are 1–4 KB; Microsoft's are the larger ones.
	maxResponseBytes = 64 << 10
	// defaultExpiresIn applies when a response has no expires_in
	// (RFC 6749 §5.1 makes it only RECOMMENDED).
	defaultExpiresIn = 3600 * time.Second
	// maxExpiresIn caps a lifetime claimed by the endpoint. Real ones are
	// 1–1.5 h (PROVIDERS.md: Lifetimes); the cap keeps a broken endpoint
	// from pinning a token forever and keeps the arithmetic from overflowing.
	maxExpiresIn = 24 * time.Hour
)

// newDefaultClient builds the client used when Config.HTTPClient is nil. It
// is private to one Source (no shared mutable state), bounds connection
// set-up on its own, and does not follow redirects: a 307/308 would re-post
// the refresh token and client secret to wherever the Location points.
func newDefaultClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   10 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// grant is what one token request yields. On failure only refresh may be
// set, when the response carried a new refresh token all the same.
type grant struct {
	access    string
	refresh   string // empty when the response carried none
	expiresIn time.Duration
}

// fetch performs one token request with the refresh token rt (used by the
// refresh_token grant only), sent at now, and returns the new tokens or an
// *Error (see grant for what it holds then).
func (s *Source) fetch(ctx context.Context, rt secret.String, now time.Time) (grant, error) {
	form, masks, err := s.form(rt, now)
	if err != nil {
		return grant{}, s.errorf(0, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return grant{}, s.errorf(0, fmt.Errorf("build request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error names the method and URL (password stripped by
		// net/http; ValidateURL refuses user info anyway), never the body.
		return grant{}, s.errorf(0, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return grant{}, s.errorf(resp.StatusCode, fmt.Errorf("read response: %w", err))
	}
	g, err := s.parseResponse(resp.StatusCode, body, masks)
	if e, ok := err.(*Error); ok && resp.StatusCode >= 300 {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), s.now())
	}
	if s.cfg.AuthType != AuthRefreshToken {
		// Only the refresh_token grant rotates anything; a refresh_token in
		// another grant's response is not ours to keep.
		g.refresh = ""
	}
	return g, err
}

// maxRetryAfter caps what a Retry-After may impose, so that a broken
// endpoint cannot park an account for days.
const maxRetryAfter = time.Hour

// retryAfter reads a Retry-After header: delay-seconds or an HTTP-date
// (RFC 9110 §10.2.3). Zero when absent, unparsable or in the past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(min(max(n, 0), int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// parseResponse turns a token endpoint's status and body into a grant or an
// *Error. masks are the credentials that were sent, to be masked in any
// text the endpoint echoes. The fuzz test drives this through a fake
// transport.
func (s *Source) parseResponse(status int, body []byte, masks []secret.String) (grant, error) {
	if status < 200 || status > 299 {
		return grant{}, s.errorResponse(status, body, masks)
	}
	if len(body) > maxResponseBytes {
		return grant{}, s.errorf(status, fmt.Errorf("response larger than %d bytes", maxResponseBytes))
	}
	var r tokenResponse
	err := json.Unmarshal(body, &r)
	if err == nil {
		err = r.ExpiresIn.err
	}
	// A new refresh token counts even when the rest of the response is
	// unusable: the endpoint may already have retired the old one.
	var g grant
	if r.Error == "" && r.RefreshToken != "" && validToken(r.RefreshToken) {
		g.refresh = r.RefreshToken
	}
	switch {
	case err != nil:
		// Never quote a success body: it may hold a token.
		return g, s.errorf(status, fmt.Errorf("decode response: %w", err))
	case r.AccessToken == "" && r.Error != "": // some endpoints report errors with 200
		return grant{}, s.errorResponse(status, body, masks)
	case r.AccessToken == "":
		return g, s.errorf(status, errors.New("response has no access_token"))
	case !validToken(r.AccessToken):
		return g, s.errorf(status, errors.New("access_token has spaces or control characters"))
	case r.RefreshToken != "" && !validToken(r.RefreshToken):
		return grant{}, s.errorf(status, errors.New("refresh_token has spaces or control characters"))
	}
	g.access, g.expiresIn = r.AccessToken, defaultExpiresIn
	if r.ExpiresIn.set {
		g.expiresIn = r.ExpiresIn.d
	}
	return g, nil
}

// errorResponse builds the *Error for an OAuth error response (RFC 6749 §5.2)
// or, when the body is not one, for whatever the endpoint sent instead.
func (s *Source) errorResponse(status int, body []byte, secrets []secret.String) *Error {
	e := &Error{Account: s.cfg.Account, Status: status}
	var r struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &r) == nil && r.Error != "" {
		e.Code = sanitize(r.Error, maxCodeBytes, secrets...)
		e.Description = sanitize(r.ErrorDescription, maxDescriptionBytes, secrets...)
		e.Final = isFinal(status, r.Error, r.ErrorDescription)
		return e
	}
	// Mask secrets in the whole body before cutting, so that no part of one
	// survives the cut.
	e.Description = sanitize(string(body), maxBodyExcerptBytes, secrets...)
	return e
}

func (s *Source) errorf(status int, err error) *Error {
	return &Error{Account: s.cfg.Account, Status: status, Err: err}
}

// validToken refuses tokens that would corrupt the SASL XOAUTH2 string
// (fields end at ^A) or the form encoding: RFC 6750 §2.1 b64token has no
// spaces or control characters.
func validToken(t string) bool {
	return !strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// tokenResponse is a successful token response (RFC 6749 §5.1), plus the
// error field some endpoints send with 200. token_type is not checked:
// XOAUTH2 presents whatever token we got as Bearer.
type tokenResponse struct {
	AccessToken  string    `json:"access_token"`
	ExpiresIn    expiresIn `json:"expires_in"`
	RefreshToken string    `json:"refresh_token"`
	Error        string    `json:"error"`
}

// expiresIn decodes expires_in given as a JSON number or as a numeric string
// (Microsoft's legacy endpoints send "3600"). A bad value is recorded in err
// rather than returned, so that decoding goes on to the other fields (a
// rotated refresh_token must not be lost to a bad expires_in).
type expiresIn struct {
	d   time.Duration
	set bool
	err error
}

func (e *expiresIn) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &v); err != nil {
			e.err = errors.New("expires_in is not a number")
			return nil
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		e.err = errors.New("expires_in is not a number")
	case f < 1:
		e.err = errors.New("expires_in is below one second")
	case f >= maxExpiresIn.Seconds():
		e.d, e.set = maxExpiresIn, true
	default:
		e.d, e.set = time.Duration(f*float64(time.Second)), true
	}
	return nil
}

package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// TokenRequest names an account at an OAuth2 token endpoint.
type TokenRequest struct {
	URL          string // the token endpoint
	ClientID     string
	ClientSecret string // sent when not empty
	RefreshToken string
}

// FetchToken runs the OAuth2 refresh_token grant (RFC 6749 §6) and returns
// the access token, so the load client can AUTH XOAUTH2 to a provider
// directly. hc nil means http.DefaultClient. The request is bounded by ctx.
func FetchToken(ctx context.Context, hc *http.Client, tr TokenRequest) (string, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"client_id":     {tr.ClientID},
		"refresh_token": {tr.RefreshToken},
	}
	if tr.ClientSecret != "" {
		form.Set("client_secret", tr.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tr.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("token response: %w", err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		return "", fmt.Errorf("token response (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: HTTP %d %s", resp.StatusCode, tok.Error)
	}
	return tok.AccessToken, nil
}

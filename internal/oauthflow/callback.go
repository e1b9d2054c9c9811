package oauthflow

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// ErrStateMismatch: the callback's state is not the request's (a forged or
// stale callback, or another request's).
var ErrStateMismatch = errors.New("the state in the callback does not match this request")

// ErrDenied: the user (or an administrator's policy) refused consent.
var ErrDenied = errors.New("consent was refused")

// Callback is what the provider sends the browser back with (RFC 6749
// §4.1.2): a code and the state, or an error.
type Callback struct {
	Code, State      string
	Error, ErrorDesc string
}

func (c Callback) err() error {
	if c.Error == "access_denied" {
		if c.ErrorDesc != "" {
			return fmt.Errorf("%w: %s", ErrDenied, c.ErrorDesc)
		}
		return ErrDenied
	}
	return fmt.Errorf("the provider answered %s: %s", c.Error, c.ErrorDesc)
}

// CallbackFromQuery reads a callback's query parameters.
func CallbackFromQuery(q url.Values) (Callback, error) {
	c := Callback{Code: q.Get("code"), State: q.Get("state"), Error: q.Get("error"), ErrorDesc: q.Get("error_description")}
	if c.Error == "" && (c.Code == "" || c.State == "") {
		return Callback{}, errors.New("the address has neither a code and state nor an error")
	}
	return c, nil
}

// ParseCallback reads the address the browser ended on, as a user pastes
// it: a full URL, or only its query ("?code=...&state=..." or
// "code=...&state=...").
func ParseCallback(pasted string) (Callback, error) {
	s := strings.TrimSpace(pasted)
	if s == "" {
		return Callback{}, errors.New("nothing pasted")
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	q, err := url.ParseQuery(s)
	if err != nil {
		return Callback{}, fmt.Errorf("not a callback address: %w", err)
	}
	return CallbackFromQuery(q)
}

// EmailFromIDToken reads the signed-in address from an id_token's claims:
// email, else Microsoft's preferred_username or upn when they are
// addresses. The signature is not checked (package comment).
func EmailFromIDToken(idToken string) (string, error) {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return "", errors.New("id_token: not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("id_token: claims: %w", err)
	}
	var c struct {
		Email             string `json:"email"`
		PreferredUsername string `json:"preferred_username"`
		UPN               string `json:"upn"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", fmt.Errorf("id_token: claims: %w", err)
	}
	for _, v := range []string{c.Email, c.PreferredUsername, c.UPN} {
		if a, err := mail.ParseAddress(v); err == nil && a.Address == v && strings.Contains(v, "@") {
			return v, nil
		}
	}
	return "", errors.New("id_token: no email, preferred_username or upn address in the claims")
}

// SameAddress reports whether two mailbox addresses are the same: the
// domain is case-insensitive, and so is the local part at both providers.
func SameAddress(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

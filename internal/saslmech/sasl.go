package saslmech

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// ErrMalformed is returned for a SASL response that does not follow the
// mechanism's grammar (bad base64, wrong number of fields, NUL in a name).
var ErrMalformed = errors.New("malformed SASL response")

// DecodeBase64 decodes a client's base64 response line. "=" alone means an
// empty response (RFC 4954 §4). Surrounding spaces are ignored.
func DecodeBase64(line string) ([]byte, error) {
	line = strings.TrimSpace(line)
	if line == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		return nil, ErrMalformed
	}
	return b, nil
}

// Plain holds the three fields of an RFC 4616 PLAIN response.
type Plain struct {
	AuthzID  string // authorization identity, usually empty
	User     string // authentication identity
	Password string
}

// DecodePlain parses the decoded PLAIN message authzid NUL authcid NUL passwd.
func DecodePlain(msg []byte) (Plain, error) {
	a, rest, ok := bytes.Cut(msg, []byte{0})
	if !ok {
		return Plain{}, ErrMalformed
	}
	u, p, ok := bytes.Cut(rest, []byte{0})
	if !ok || bytes.IndexByte(p, 0) >= 0 || len(u) == 0 {
		return Plain{}, ErrMalformed
	}
	return Plain{AuthzID: string(a), User: string(u), Password: string(p)}, nil
}

// EncodePlain is the client side of PLAIN, used by tests and the bench.
func EncodePlain(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
}

// LoginUserPrompt and LoginPasswordPrompt are the base64 prompts of the LOGIN
// mechanism ("Username:" and "Password:") that clients such as Outlook expect.
const (
	LoginUserPrompt     = "VXNlcm5hbWU6"
	LoginPasswordPrompt = "UGFzc3dvcmQ6"
)

// XOAUTH2 returns the raw (not yet base64) XOAUTH2 initial response:
// "user=" USER ^A "auth=Bearer " TOKEN ^A ^A. USER must be the mailbox the
// token was issued for (PROVIDERS.md), never the envelope sender.
func XOAUTH2(user, token string) []byte {
	b := make([]byte, 0, len(user)+len(token)+20)
	b = append(b, "user="...)
	b = append(b, user...)
	b = append(b, "\x01auth=Bearer "...)
	b = append(b, token...)
	b = append(b, 1, 1)
	return b
}

// OAuthBearer returns the raw RFC 7628 initial response for host and port.
func OAuthBearer(user, host string, port int, token string) []byte {
	var b bytes.Buffer
	b.WriteString("n,a=")
	b.WriteString(escapeSaslName(user))
	b.WriteString(",\x01host=")
	b.WriteString(host)
	b.WriteString("\x01port=")
	b.WriteString(strconv.Itoa(port))
	b.WriteString("\x01auth=Bearer ")
	b.WriteString(token)
	b.WriteString("\x01\x01")
	return b.Bytes()
}

// escapeSaslName applies RFC 5801 §5.1: "," and "=" in a GS2 name.
func escapeSaslName(s string) string {
	if !strings.ContainsAny(s, ",=") {
		return s
	}
	s = strings.ReplaceAll(s, "=", "=3D")
	return strings.ReplaceAll(s, ",", "=2C")
}

// OAuthRequest is what a server decodes from an XOAUTH2 or OAUTHBEARER
// response: the claimed user and the bearer token.
type OAuthRequest struct {
	User  string
	Token string
}

// DecodeXOAUTH2 parses a raw XOAUTH2 response (server side; the fake
// provider uses it).
func DecodeXOAUTH2(msg []byte) (OAuthRequest, error) {
	s := string(msg)
	if !strings.HasSuffix(s, "\x01\x01") {
		return OAuthRequest{}, ErrMalformed
	}
	var r OAuthRequest
	var haveUser, haveAuth bool
	for _, kv := range strings.Split(strings.TrimSuffix(s, "\x01\x01"), "\x01") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return OAuthRequest{}, ErrMalformed
		}
		switch k {
		case "user":
			r.User, haveUser = v, true
		case "auth":
			tok, ok := cutBearer(v)
			if !ok {
				return OAuthRequest{}, ErrMalformed
			}
			r.Token, haveAuth = tok, true
		}
	}
	if !haveUser || !haveAuth {
		return OAuthRequest{}, ErrMalformed
	}
	return r, nil
}

// DecodeOAuthBearer parses a raw RFC 7628 response (server side).
func DecodeOAuthBearer(msg []byte) (OAuthRequest, error) {
	s := string(msg)
	gs2, rest, ok := strings.Cut(s, "\x01")
	if !ok || !strings.HasSuffix(rest, "\x01\x01") {
		return OAuthRequest{}, ErrMalformed
	}
	var r OAuthRequest
	// gs2 header: "n,a=user," (flag, authzid, empty)
	parts := strings.Split(gs2, ",")
	if len(parts) != 3 || (parts[0] != "n" && parts[0] != "y") || parts[2] != "" {
		return OAuthRequest{}, ErrMalformed
	}
	if a, ok := strings.CutPrefix(parts[1], "a="); ok {
		r.User = strings.ReplaceAll(strings.ReplaceAll(a, "=2C", ","), "=3D", "=")
	} else if parts[1] != "" {
		return OAuthRequest{}, ErrMalformed
	}
	var haveAuth bool
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "\x01\x01"), "\x01") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return OAuthRequest{}, ErrMalformed
		}
		if k == "auth" {
			tok, ok := cutBearer(v)
			if !ok {
				return OAuthRequest{}, ErrMalformed
			}
			r.Token, haveAuth = tok, true
		}
	}
	if !haveAuth {
		return OAuthRequest{}, ErrMalformed
	}
	return r, nil
}

func cutBearer(v string) (string, bool) {
	if len(v) < 7 || !strings.EqualFold(v[:7], "Bearer ") {
		return "", false
	}
	return v[7:], true
}

// Challenge is Gmail's (and Dovecot's) failure challenge: a 334 whose text
// is base64 JSON such as {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}.
// The client must answer it with an empty line and then reads the final 535.
type Challenge struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

// TokenRejected reports whether the status means the token itself was bad
// or expired, so refreshing it and trying once more can help: Gmail's
// XOAUTH2 says "400"/"401"; OAUTHBEARER servers use the RFC 6750 error
// code "invalid_token" (RFC 7628 §3.2.2; Dovecot does).
func (c Challenge) TokenRejected() bool {
	return c.Status == "400" || c.Status == "401" || c.Status == "invalid_token"
}

// DecodeChallenge parses the text of a 334 failure challenge.
func DecodeChallenge(text string) (Challenge, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return Challenge{}, ErrMalformed
	}
	var c Challenge
	if err := json.Unmarshal(raw, &c); err != nil {
		return Challenge{}, ErrMalformed
	}
	if c.Status == "" {
		return Challenge{}, ErrMalformed
	}
	return c, nil
}

// EncodeChallenge is the server side of DecodeChallenge (fake provider).
func EncodeChallenge(c Challenge) string {
	b, _ := json.Marshal(c)
	return base64.StdEncoding.EncodeToString(b)
}

package token

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// ErrFinal matches (with errors.Is) every *Error whose Final field is set:
// the token endpoint rejected the refresh token or the client for good
// (invalid_grant, unauthorized_client, invalid_client), so retrying cannot
// help and the account needs new consent (PROVIDERS.md: invalid_grant).
var ErrFinal = errors.New("oauth2 credential rejected for good")

// Error is a failed token request. It never holds a secret: Description is
// sanitized and has the account's refresh token and client secret masked.
// One *Error may be handed to many callers (those sharing a request, or
// those answered from the Final hold-off); treat it as read-only.
type Error struct {
	Account     string // Config.Account of the Source
	Status      int    // HTTP status, 0 when no response arrived
	Code        string // OAuth "error" field, e.g. "invalid_grant"; empty if none
	Description string // "error_description" or a truncated non-JSON body; Microsoft's AADSTS codes live here
	Final       bool   // the credential is definitively dead; retrying cannot help
	Err         error  // underlying transport or decoding error, when any
}

// Error renders e.g.
// `refresh gmail_1: token endpoint: 400 invalid_grant: Token has been expired or revoked.`
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("refresh ")
	b.WriteString(e.Account)
	b.WriteString(": token endpoint")
	sep := ": "
	if e.Status != 0 {
		b.WriteString(sep)
		b.WriteString(strconv.Itoa(e.Status))
		sep = " "
	}
	if e.Code != "" {
		b.WriteString(sep)
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying transport or decoding error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrFinal) true for a Final error.
func (e *Error) Is(target error) bool { return target == ErrFinal && e.Final }

// finalCodes are the OAuth error codes that mean the credential is dead
// (RFC 6749 §5.2; PROVIDERS.md: invalid_grant).
var finalCodes = map[string]bool{
	"invalid_grant":       true,
	"unauthorized_client": true,
	"invalid_client":      true,
}

// isFinal reports whether an error response means the credential is dead.
// Only 400 and 401 count: a 5xx or 429 carrying one of these codes is the
// endpoint having a bad moment, not a verdict.
func isFinal(status int, code string) bool {
	return (status == 400 || status == 401) && finalCodes[code]
}

// Limits on text copied from the token endpoint into an Error.
const (
	maxCodeBytes        = 64
	maxDescriptionBytes = 1024 // AADSTS descriptions with trace and correlation ids run to ~400
	maxBodyExcerptBytes = 256  // of a non-JSON body, e.g. an HTML error page
)

// sanitize makes endpoint-supplied text safe for an error or a log line:
// valid UTF-8, no control characters, whitespace collapsed, every known
// secret masked (raw and form-encoded, in case the endpoint echoes the
// request), and at most limit bytes.
func sanitize(s string, limit int, secrets ...secret.String) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	for _, sec := range secrets {
		if sec.Empty() {
			continue
		}
		v := sec.Reveal()
		s = strings.ReplaceAll(s, v, "[redacted]")
		if q := url.QueryEscape(v); q != v {
			s = strings.ReplaceAll(s, q, "[redacted]")
		}
	}
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

package token

import (
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// ErrFinal matches (with errors.Is) every *Error whose Final field is set:
// the token endpoint rejected the refresh token or the client for good
// (invalid_grant, unauthorized_client, invalid_client, consent or
// interaction required, or an AADSTS code that means the same), so retrying
// cannot help and the account needs new consent (PROVIDERS.md:
// invalid_grant). The Source then stays in StateNeedsConsent.
var ErrFinal = errors.New("oauth2 credential rejected for good")

// ErrDisabled is the Err of the *Error a disabled Source answers with
// (Source.Disable); no request is made.
var ErrDisabled = errors.New("account disabled by an operator")

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
	// RetryAfter is the endpoint's Retry-After (RFC 9110 §10.2.3) on a
	// failed response, capped at one hour; zero when it sent none.
	RetryAfter time.Duration
}

// Error renders e.g.
// `refresh gmail_1: token endpoint: 400 invalid_grant: Token has been expired or revoked.`
func (e *Error) Error() string {
	d := e.detail()
	if d == "" {
		return "refresh " + e.Account + ": token endpoint"
	}
	return "refresh " + e.Account + ": token endpoint: " + d
}

// detail is Error without the account prefix: what the endpoint said, e.g.
// `400 invalid_grant: Token has been expired or revoked.`
func (e *Error) detail() string {
	var b strings.Builder
	sep := ""
	if e.Status != 0 {
		b.WriteString(strconv.Itoa(e.Status))
		sep = " "
	}
	if e.Code != "" {
		b.WriteString(sep)
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Description)
	}
	if e.Err != nil {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying transport or decoding error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrFinal) true for a Final error.
func (e *Error) Is(target error) bool { return target == ErrFinal && e.Final }

// finalCodes are the OAuth error codes that mean the credential or the
// client is dead or lacks consent (RFC 6749 §5.2; OpenID Connect Core
// §3.1.2.6 for consent_required and interaction_required, which Microsoft
// returns from its token endpoint; PROVIDERS.md: invalid_grant).
// invalid_scope is here too: asking again with the same scope cannot help.
var finalCodes = map[string]bool{
	"invalid_grant":        true,
	"unauthorized_client":  true,
	"invalid_client":       true,
	"consent_required":     true,
	"interaction_required": true,
	"access_denied":        true,
	"invalid_scope":        true,
}

// aadstsFinal are Microsoft Entra error codes that mean a refresh token,
// a user or an app can no longer get tokens until someone acts, whatever
// OAuth "error" accompanies them (Microsoft Entra authentication and
// authorization error codes).
var aadstsFinal = map[string]bool{
	"AADSTS50173":   true, // grant revoked: password changed or reset
	"AADSTS700082":  true, // refresh token expired from inactivity
	"AADSTS70043":   true, // refresh token expired by sign-in frequency policy
	"AADSTS70008":   true, // refresh token or code expired
	"AADSTS70000":   true, // grant invalid or malformed
	"AADSTS65001":   true, // consent missing
	"AADSTS65004":   true, // consent declined
	"AADSTS50076":   true, // MFA required
	"AADSTS50079":   true, // MFA enrolment required
	"AADSTS50078":   true, // MFA claim expired
	"AADSTS53003":   true, // blocked by Conditional Access
	"AADSTS50057":   true, // user disabled
	"AADSTS50034":   true, // user does not exist
	"AADSTS50055":   true, // password expired
	"AADSTS50020":   true, // user not in tenant
	"AADSTS700016":  true, // application not found in the tenant
	"AADSTS7000215": true, // invalid client secret
	"AADSTS7000222": true, // client secret expired
	"AADSTS700027":  true, // client assertion signature invalid
	"AADSTS90002":   true, // tenant not found
	"AADSTS500011":  true, // resource principal not found
}

// aadstsTransient are Microsoft Entra codes that mean "try again later",
// which override everything else.
var aadstsTransient = map[string]bool{
	"AADSTS90033": true, // a transient error has occurred
	"AADSTS50196": true, // request loop detected: back off
	"AADSTS90100": true, // request empty or malformed in transit
}

var aadstsCode = regexp.MustCompile(`\bAADSTS[0-9]{5,8}\b`)

// deadRefreshToken matches descriptions by which an issuer says, under a
// code other than invalid_grant, that the refresh token itself is unknown,
// used up or revoked: dex answers a revoked or already rotated token with
// `400 invalid_request` "Refresh token is invalid or has already been
// claimed by another client." (issue 13, 3b). The same request can only get
// the same answer, so the account needs consent.
var deadRefreshToken = regexp.MustCompile(`(?i)refresh[ _]token (is|was|has been) (invalid|expired|revoked|already)|already been (claimed|used|redeemed)`)

// isFinal reports whether an error response means the credential is dead.
// Only 400 and 401 count: a 5xx or 429 carrying one of these codes is the
// endpoint having a bad moment, not a verdict.
func isFinal(status int, code, description string) bool {
	if status != 400 && status != 401 {
		return false
	}
	aad := aadstsCode.FindString(description)
	switch {
	case aadstsTransient[aad]:
		return false
	case aadstsFinal[aad]:
		return true
	case code == "invalid_request" && deadRefreshToken.MatchString(description):
		return true
	}
	return finalCodes[code]
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

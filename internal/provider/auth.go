package provider

import "github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"

// Auth is what a refused upstream AUTH says about the access token.
type Auth uint8

const (
	// AuthRefused: refused for another reason (SMTP AUTH disabled for the
	// mailbox, ...); a new token would fare no better.
	AuthRefused Auth = iota
	// TokenRejected: the token itself was refused: refresh it and try
	// once more.
	TokenRejected
	// PlainRefusal: a bare 535 with no reason the proxy could act on.
	// Microsoft answers a revoked or prematurely expired token this way
	// ("535 5.7.3 Authentication unsuccessful"), but also a mailbox
	// without the right to send: a refresh can help only a token that was
	// cached, not one just issued, which only the caller knows.
	PlainRefusal
)

// ClassifyAuth says what the final reply r of a refused AUTH means
// (PROVIDERS.md). challenge tells that a failure challenge came before r,
// and challengeRejectsToken that it refused the token (Gmail's 334 with
// status 400 or 401, OAUTHBEARER's invalid_token:
// saslmech.Challenge.TokenRejected).
func ClassifyAuth(r reply.Reply, challenge, challengeRejectsToken bool) Auth {
	switch {
	case challengeRejectsToken:
		return TokenRejected
	// Microsoft HVE: 501 5.5.127 "token will expire soon", 501 5.5.124
	// "invalid XOAUTH2 auth data".
	case r.Code == 501 && (r.Enhanced == "5.5.127" || r.Enhanced == "5.5.124"):
		return TokenRejected
	// Microsoft: 535 5.7.139 is "SMTP AUTH disabled", a reason.
	case !challenge && r.Code == 535 && r.Enhanced != "5.7.139":
		return PlainRefusal
	}
	return AuthRefused
}

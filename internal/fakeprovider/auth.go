package fakeprovider

import (
	"errors"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

// cmdAuth implements AUTH XOAUTH2 and AUTH OAUTHBEARER (RFC 4954, RFC
// 7628) the way Gmail answers them (PROVIDERS.md). lineLen is the length
// of the whole command line, for Gmail's long-line rule.
func (s *session) cmdAuth(arg string, lineLen int) {
	o := &s.p.opts
	switch {
	case lineLen > o.MaxAuthLineBytes:
		// PROVIDERS.md: Gmail rejects long AUTH lines instead of reading
		// them; RFC 4954 clients send the response after "334 " instead.
		s.reply(555, "5.5.2", "Syntax error, command line too long")
		return
	case !s.helo:
		s.reply(503, "5.5.1", "EHLO/HELO first.")
		return
	case o.RequireTLSForAuth && !s.tls:
		s.reply(530, "5.7.0", "Must issue a STARTTLS command first.")
		return
	case s.acct != nil:
		s.reply(503, "5.5.1", "Already authenticated.")
		return
	case s.t.active:
		s.reply(503, "5.5.1", "AUTH not allowed during a mail transaction.")
		return
	case s.sessionFault(StageAuth):
		return
	}
	mech, ir, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	var decode func([]byte) (saslmech.OAuthRequest, error)
	bearer := false
	switch mech {
	case "XOAUTH2":
		decode = saslmech.DecodeXOAUTH2
	case "OAUTHBEARER":
		decode, bearer = saslmech.DecodeOAuthBearer, true
	default:
		s.reply(504, "5.7.4", "Unrecognized authentication type.")
		return
	}
	if !hasIR {
		s.w.WriteString("334 \r\n")
		line, ok := s.readAuthLine()
		if !ok {
			return
		}
		ir = line
	}
	ir = strings.TrimSpace(ir)
	if ir == "*" {
		s.reply(501, "5.7.0", "Authentication aborted.")
		return
	}
	raw, err := saslmech.DecodeBase64(ir)
	if err != nil {
		s.p.loginFailures.Add(1)
		s.reply(501, "5.5.2", "Cannot Decode response")
		return
	}
	req, err := decode(raw)
	if err != nil {
		// Gmail answers a response it cannot parse with status 400.
		s.failAuth("400", "", "malformed")
		return
	}
	// RFC 7628 makes the authzid optional; XOAUTH2 always names the user.
	a, ok := s.p.checkAccess(req.User, req.Token, bearer)
	if !ok {
		s.failAuth("401", req.User, "bad or expired token")
		return
	}
	key := strings.ToLower(a.Email)
	if !s.p.acquireSession(key) {
		// PROVIDERS.md: Microsoft allows 3 sessions per mailbox.
		s.p.loginFailures.Add(1)
		s.p.log.Info("auth", "conn_id", s.id, "account", a.Email, "code", 432)
		s.reply(432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded")
		return
	}
	s.acct, s.key, s.mech = a, key, mech
	s.p.logins.Add(1)
	s.p.log.Info("auth", "conn_id", s.id, "account", a.Email, "code", 235)
	s.reply(235, "2.7.0", "Accepted")
}

// readAuthLine flushes a 334 and reads the client's response line.
func (s *session) readAuthLine() (string, bool) {
	if s.w.Flush() != nil {
		s.closed = true
		return "", false
	}
	line, err := s.readLine(maxAuthResponseBytes)
	if errors.Is(err, errLineTooLong) {
		s.reply(500, "5.5.2", "Line too long.")
		return "", false
	}
	if err != nil {
		s.closed = true
		return "", false
	}
	return string(line), true
}

// failAuth is Gmail's answer to a bad token: a 334 carrying base64 JSON,
// then, after whatever line the client sends, a two-line 535 5.7.8.
func (s *session) failAuth(status, user, why string) {
	s.p.loginFailures.Add(1)
	s.p.log.Info("auth", "conn_id", s.id, "account", user, "code", 535, "err", why)
	ch := saslmech.EncodeChallenge(saslmech.Challenge{Status: status, Schemes: "bearer", Scope: scope})
	s.w.WriteString("334 " + ch + "\r\n")
	if _, ok := s.readAuthLine(); !ok {
		return
	}
	s.w.WriteString("535-5.7.8 Username and Password not accepted. For more information, go to\r\n" +
		"535 5.7.8  https://support.google.com/mail/?p=BadCredentials " + s.id + " - gsmtp\r\n")
}

package saslmech_test

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

func FuzzDecodePlain(f *testing.F) {
	f.Add([]byte("\x00user\x00pass"))
	f.Add([]byte("a\x00b\x00c\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := saslmech.DecodePlain(b)
		if err != nil {
			return
		}
		// Round trip: what we accept must re-encode to the same bytes.
		if got := p.AuthzID + "\x00" + p.User + "\x00" + p.Password; got != string(b) {
			t.Fatalf("round trip %q -> %q", b, got)
		}
	})
}

func FuzzDecodeBase64(f *testing.F) {
	f.Add("dXNlcg==")
	f.Add("=")
	f.Fuzz(func(t *testing.T, s string) { _, _ = saslmech.DecodeBase64(s) })
}

// FuzzXOAUTH2 checks the client-side builder against the decoder: the
// builder never panics, and whenever neither field holds the ^A separator
// the fake provider decodes exactly the user and token that were sent.
func FuzzXOAUTH2(f *testing.F) {
	f.Add("user@example.com", "ya29.a0")
	f.Add("", "")
	f.Add("user=x@example.com", "Bearer Bearer ")
	f.Add("a@b", "tok\x01auth=Bearer forged")
	f.Fuzz(func(t *testing.T, user, tok string) {
		raw := saslmech.XOAUTH2(user, tok)
		r, err := saslmech.DecodeXOAUTH2(raw)
		if strings.Contains(user, "\x01") || strings.Contains(tok, "\x01") {
			return // forges a field; upstream.Auth refuses such input before building
		}
		if err != nil {
			t.Fatalf("XOAUTH2(%q, %q) = %q does not decode: %v", user, tok, raw, err)
		}
		if r.User != user || r.Token != tok {
			t.Fatalf("XOAUTH2(%q, %q) decodes to (%q, %q)", user, tok, r.User, r.Token)
		}
	})
}

// FuzzOAuthBearer does the same for the RFC 7628 builder upstream.Auth
// uses: the user goes through RFC 5801 §5.1 escaping and must come back
// unescaped; host and port must not disturb the user or the token.
func FuzzOAuthBearer(f *testing.F) {
	f.Add("user@example.com", "smtp.gmail.com", 587, "ya29.a0")
	f.Add("a,b=c@example.com", "smtp.office365.com", 587, "tok")
	f.Add("=2C=3D,=", "h=st", -1, "Bearer x")
	f.Add("", "", 0, "")
	f.Fuzz(func(t *testing.T, user, host string, port int, tok string) {
		raw := saslmech.OAuthBearer(user, host, port, tok)
		r, err := saslmech.DecodeOAuthBearer(raw)
		if strings.Contains(user, "\x01") || strings.Contains(tok, "\x01") || strings.Contains(host, "\x01") {
			return // forges a field; upstream.Auth refuses such a user or token, and the host comes from config
		}
		if err != nil {
			t.Fatalf("OAuthBearer(%q, %q, %d, %q) = %q does not decode: %v", user, host, port, tok, raw, err)
		}
		if r.User != user || r.Token != tok {
			t.Fatalf("OAuthBearer(%q, %q, %d, %q) decodes to (%q, %q)", user, host, port, tok, r.User, r.Token)
		}
	})
}

func FuzzDecodeXOAUTH2(f *testing.F) {
	f.Add([]byte("user=a\x01auth=Bearer t\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = saslmech.DecodeXOAUTH2(b) })
}

func FuzzDecodeOAuthBearer(f *testing.F) {
	f.Add([]byte("n,a=u@x,\x01host=h\x01port=1\x01auth=Bearer t\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = saslmech.DecodeOAuthBearer(b) })
}

func FuzzDecodeChallenge(f *testing.F) {
	f.Add("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=")
	f.Fuzz(func(t *testing.T, s string) { _, _ = saslmech.DecodeChallenge(s) })
}

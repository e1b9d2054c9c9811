package saslmech_test

import (
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

func FuzzXOAUTH2(f *testing.F) {
	f.Add("user@example.com", "ya29.a0")
	f.Fuzz(func(t *testing.T, user, tok string) {
		r, err := saslmech.DecodeXOAUTH2(saslmech.XOAUTH2(user, tok))
		if err != nil {
			return // user or token containing ^A cannot round trip; decoder must just not panic
		}
		_ = r
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

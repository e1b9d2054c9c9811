package saslmech_test

import (
	"encoding/base64"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/saslmech"
)

func TestDecodePlain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    saslmech.Plain
		wantErr bool
	}{
		{"plain", "\x00user\x00pass", saslmech.Plain{User: "user", Password: "pass"}, false},
		{"authzid", "admin\x00user\x00pa ss", saslmech.Plain{AuthzID: "admin", User: "user", Password: "pa ss"}, false},
		{"empty password", "\x00user\x00", saslmech.Plain{User: "user"}, false},
		{"one nul", "\x00user", saslmech.Plain{}, true},
		{"three nul", "\x00u\x00p\x00x", saslmech.Plain{}, true},
		{"empty user", "\x00\x00p", saslmech.Plain{}, true},
		{"nothing", "", saslmech.Plain{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := saslmech.DecodePlain([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("DecodePlain(%q) = %+v, %v", tc.in, got, err)
			}
		})
	}
}

func TestDecodeBase64(t *testing.T) {
	t.Parallel()
	if b, err := saslmech.DecodeBase64("="); err != nil || len(b) != 0 {
		t.Errorf("= : %q %v", b, err)
	}
	if _, err := saslmech.DecodeBase64("!!!"); err == nil {
		t.Error("garbage accepted")
	}
	if b, _ := saslmech.DecodeBase64(" dXNlcg== "); string(b) != "user" {
		t.Errorf("got %q", b)
	}
}

func TestXOAUTH2RoundTrip(t *testing.T) {
	t.Parallel()
	raw := saslmech.XOAUTH2("sender@example.com", "ya29.tok")
	if string(raw) != "user=sender@example.com\x01auth=Bearer ya29.tok\x01\x01" {
		t.Fatalf("wire = %q", raw)
	}
	got, err := saslmech.DecodeXOAUTH2(raw)
	if err != nil || got.User != "sender@example.com" || got.Token != "ya29.tok" {
		t.Fatalf("decode = %+v %v", got, err)
	}
}

func TestOAuthBearerRoundTrip(t *testing.T) {
	t.Parallel()
	raw := saslmech.OAuthBearer("a,b=c@example.com", "smtp.gmail.com", 587, "tok")
	want := "n,a=a=2Cb=3Dc@example.com,\x01host=smtp.gmail.com\x01port=587\x01auth=Bearer tok\x01\x01"
	if string(raw) != want {
		t.Fatalf("wire = %q", raw)
	}
	got, err := saslmech.DecodeOAuthBearer(raw)
	if err != nil || got.User != "a,b=c@example.com" || got.Token != "tok" {
		t.Fatalf("decode = %+v %v", got, err)
	}
}

func TestChallenge(t *testing.T) {
	t.Parallel()
	// The exact text Gmail sends (PROVIDERS.md).
	text := base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`))
	c, err := saslmech.DecodeChallenge(text)
	if err != nil || !c.TokenRejected() || c.Scope != "https://mail.google.com/" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := saslmech.DecodeChallenge("VXNlcm5hbWU6"); err == nil {
		t.Error("LOGIN prompt taken for a challenge")
	}
	c2, err := saslmech.DecodeChallenge(saslmech.EncodeChallenge(saslmech.Challenge{Status: "400"}))
	if err != nil || !c2.TokenRejected() {
		t.Fatalf("%+v %v", c2, err)
	}
	// RFC 7628 §3.2.2 (OAUTHBEARER, Dovecot): the RFC 6750 error code.
	c3, err := saslmech.DecodeChallenge(base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token","schemes":"bearer","scope":"mail"}`)))
	if err != nil || !c3.TokenRejected() {
		t.Fatalf("invalid_token: %+v %v", c3, err)
	}
	if c4 := (saslmech.Challenge{Status: "insufficient_scope"}); c4.TokenRejected() {
		t.Fatal("insufficient_scope taken for a rejected token: refreshing cannot fix a scope")
	}
}

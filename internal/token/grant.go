package token

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Grant types and assertion types sent in the form (RFC 7523 §2.1, §2.2).
const (
	grantJWTBearer       = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	clientAssertionJWT   = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	serviceAssertionLife = time.Hour        // Google's maximum (PROVIDERS.md: exp ≤ 1 h)
	clientAssertionLife  = 10 * time.Minute // Microsoft: short-lived; the assertion is used at once
)

// form builds the body of one token request for the account's grant, sent
// at now with the current refresh token rt. It also returns the credentials
// in it that error text must never repeat.
func (s *Source) form(rt secret.String, now time.Time) (url.Values, []secret.String, error) {
	f := url.Values{}
	masks := []secret.String{s.cfg.ClientSecret, rt}
	switch s.cfg.AuthType {
	case AuthGoogleServiceAccount:
		// Google domain-wide delegation (PROVIDERS.md; RFC 7523 §2.1).
		jwt, err := signJWT(s.cfg.Signer,
			jwtHeader{Alg: "RS256", Typ: "JWT", Kid: s.cfg.KeyID},
			jwtClaims{
				Iss:   s.cfg.Issuer,
				Sub:   s.cfg.Subject,
				Scope: s.cfg.Scope,
				Aud:   s.cfg.TokenURL,
				Iat:   now.Unix(),
				Exp:   now.Add(serviceAssertionLife).Unix(),
			})
		if err != nil {
			return nil, nil, err
		}
		f.Set("grant_type", grantJWTBearer)
		f.Set("assertion", jwt)
		masks = append(masks, secret.New(jwt))
	case AuthClientCredentials:
		// Microsoft app-only (PROVIDERS.md; RFC 6749 §4.4).
		f.Set("grant_type", "client_credentials")
		f.Set("client_id", s.cfg.ClientID)
		f.Set("scope", s.cfg.Scope)
		if !s.cfg.ClientSecret.Empty() {
			f.Set("client_secret", s.cfg.ClientSecret.Reveal())
			break
		}
		// Certificate credential: a client assertion whose x5t names the
		// certificate registered with the app (RFC 7523 §2.2; Microsoft
		// identity platform "certificate credentials").
		jwt, err := signJWT(s.cfg.Signer,
			jwtHeader{Alg: "RS256", Typ: "JWT", X5t: base64.RawURLEncoding.EncodeToString(s.cfg.CertThumbprint)},
			jwtClaims{
				Iss: s.cfg.ClientID,
				Sub: s.cfg.ClientID,
				Aud: s.cfg.TokenURL,
				Jti: newJTI(),
				Nbf: now.Unix(),
				Iat: now.Unix(),
				Exp: now.Add(clientAssertionLife).Unix(),
			})
		if err != nil {
			return nil, nil, err
		}
		f.Set("client_assertion_type", clientAssertionJWT)
		f.Set("client_assertion", jwt)
		masks = append(masks, secret.New(jwt))
	default: // AuthRefreshToken (RFC 6749 §6)
		f.Set("grant_type", "refresh_token")
		f.Set("refresh_token", rt.Reveal())
		f.Set("client_id", s.cfg.ClientID)
		if !s.cfg.ClientSecret.Empty() {
			f.Set("client_secret", s.cfg.ClientSecret.Reveal())
		}
		if s.cfg.Scope != "" {
			f.Set("scope", s.cfg.Scope)
		}
	}
	return f, masks, nil
}

// jwtHeader is a JWS header (RFC 7515 §4.1).
type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid,omitempty"`
	X5t string `json:"x5t,omitempty"`
}

// jwtClaims are the claims of either assertion (RFC 7519 §4.1; Google adds
// "scope").
type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub,omitempty"`
	Scope string `json:"scope,omitempty"`
	Aud   string `json:"aud"`
	Jti   string `json:"jti,omitempty"`
	Nbf   int64  `json:"nbf,omitempty"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// signJWT returns the compact serialization of an RS256-signed JWT (RFC 7515
// §7.1; RS256 is RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3).
func signJWT(signer crypto.Signer, h jwtHeader, c jwtClaims) (string, error) {
	hb, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	cb, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	sum := sha256.Sum256([]byte(signing))
	sig, err := signer.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("sign assertion: %w", err)
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// newJTI returns a random UUID (version 4) for an assertion's "jti", which
// Microsoft uses to refuse a replayed assertion.
func newJTI() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand documentation)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

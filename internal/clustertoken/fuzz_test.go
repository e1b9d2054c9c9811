package clustertoken

import (
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// FuzzDecode: any hash read back from Redis decodes or fails without a
// panic and without quoting a value in the error; what encode writes
// decodes to the same record.
func FuzzDecode(f *testing.F) {
	f.Add("3", "v1:c", "rt", "2", "at", "1700000000000", "1699999990000", "", "")
	f.Add("x", "", "", "-1", "", "", "", "needs_consent", "invalid_grant")
	f.Fuzz(func(t *testing.T, v, cred, rt, rtv, at, exp, obt, st, errText string) {
		m := map[string]string{"v": v, "cred": cred, "rt": rt, "rtv": rtv, "at": at, "exp": exp, "obt": obt, "st": st, "err": errText}
		c, err := decode(m)
		if err != nil {
			for _, secretValue := range []string{rt, at} {
				if len(secretValue) > 3 && strings.Contains(err.Error(), secretValue) {
					t.Fatalf("error quotes a token: %v", err)
				}
			}
			return
		}
		enc := encode(c)
		back := map[string]string{"v": v}
		for i := 0; i+1 < len(enc); i += 2 {
			back[enc[i]] = enc[i+1]
		}
		c2, err := decode(back)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if c2.RefreshToken != c.RefreshToken || c2.AccessToken != c.AccessToken || c2.RefreshVersion != c.RefreshVersion ||
			!c2.Expiry.Equal(c.Expiry) || c2.State != c.State || c2.Credential != c.Credential {
			t.Fatalf("round trip changed the record")
		}
	})
}

func TestEncodeDecode_roundTrip(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(time.Now().UnixMilli())
	for _, c := range []token.Committed{
		{},
		{Credential: "v1:c", Grant: "v1:g", RefreshToken: secret.New("rt"), RefreshVersion: 4,
			AccessToken: secret.New("at"), Expiry: now.Add(time.Hour), Obtained: now},
		{Credential: "v1:c", State: "needs_consent", LastError: "invalid_grant"},
	} {
		m := map[string]string{"v": "7"}
		enc := encode(c)
		for i := 0; i+1 < len(enc); i += 2 {
			m[enc[i]] = enc[i+1]
		}
		got, err := decode(m)
		if err != nil {
			t.Fatal(err)
		}
		c.Version = 7
		if got.Version != c.Version || got.RefreshToken != c.RefreshToken || got.AccessToken != c.AccessToken ||
			!got.Expiry.Equal(c.Expiry) || !got.Obtained.Equal(c.Obtained) || got.State != c.State || got.LastError != c.LastError {
			t.Fatalf("round trip: got %+v, want %+v", got, c)
		}
	}
}

package tokenstore_test

import (
	"maps"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// FuzzParse feeds arbitrary bytes to the state-file parser: it must never
// panic, and whatever it accepts must survive Encode and Parse unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"accounts":{}}`))
	f.Add([]byte(`{"_comment":"x","version":1,"accounts":{"ms_1":{"credential":"v1:ab","grant":"v1:cd","refresh_token":"M.R3","access_token":"EwB","expiry":"2025-06-01T13:00:00Z","obtained":"2025-06-01T12:00:00Z","state":"needs_consent","last_error":"400 invalid_grant","last_used":"2025-06-01T12:30:00+02:00","updated":"2025-06-01T12:00:00.123456789Z","future_key":[1,2]}}}`))
	f.Add([]byte(`{"version":1,"accounts":{"":{}}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"accounts":{"a":{"expiry":"not a time"}}}`))
	f.Add([]byte(`{"version":1,"accounts":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := tokenstore.Parse(data)
		if err != nil {
			return
		}
		out, err := tokenstore.Encode(entries)
		if err != nil {
			t.Fatalf("Encode of parsed entries: %v", err)
		}
		again, err := tokenstore.Parse(out)
		if err != nil {
			t.Fatalf("Parse of own output: %v\n%s", err, out)
		}
		if !maps.EqualFunc(entries, again, equalEntry) {
			t.Fatalf("round trip changed entries:\n%v\n%v", entries, again)
		}
	})
}

func equalEntry(a, b tokenstore.Entry) bool {
	return a.Credential == b.Credential && a.Grant == b.Grant && a.RefreshToken.Reveal() == b.RefreshToken.Reveal() &&
		a.AccessToken.Reveal() == b.AccessToken.Reveal() && a.Expiry.Equal(b.Expiry) &&
		a.Obtained.Equal(b.Obtained) && a.State == b.State && a.LastError == b.LastError &&
		a.LastUsed.Equal(b.LastUsed) && a.Updated.Equal(b.Updated)
}

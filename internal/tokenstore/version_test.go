package tokenstore_test

import (
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// TestStore_refreshVersionSurvivesReopen: the version of a rotated refresh
// token (cluster mode) is written and read back, so that a restarted proxy
// can still re-seed an emptied Redis with it.
func TestStore_refreshVersionSurvivesReopen(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{0, 1, 1 << 40} {
		dir := t.TempDir()
		s, err := tokenstore.Open(tokenstore.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutSync("a", tokenstore.Entry{Credential: "v1:x", RefreshToken: secret.New("rt-2"), RefreshVersion: v}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := tokenstore.Open(tokenstore.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		e, ok := s2.Get("a")
		if !ok || e.RefreshVersion != v || e.RefreshToken.Reveal() != "rt-2" {
			t.Fatalf("version %d: got %d (found %v)", v, e.RefreshVersion, ok)
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

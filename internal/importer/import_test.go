package importer_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// memStore records what it was asked to save.
type memStore struct {
	mu   sync.Mutex
	recs []config.AccountRecord
}

func (m *memStore) Add(_ context.Context, recs []config.AccountRecord, _ bool, progress func(int)) []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, recs...)
	if progress != nil {
		progress(len(recs))
	}
	return make([]error, len(recs))
}

func TestTokenCheck_againstFakeProvider(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		rotate  bool
		rt      string // refresh token in the line; "" means the provider's
		revoked bool
		err     string
	}{
		{name: "good credential"},
		{name: "rotated refresh token is what gets saved", rotate: true},
		{name: "unknown refresh token", rt: "1//not-issued", err: "verification failed"},
		{name: "revoked credential", revoked: true, err: "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fp, err := fakeprovider.Start(fakeprovider.Options{RotateRefreshTokens: tc.rotate})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fp.Close() })
			fp.AddAccount(fakeprovider.Account{Email: "a@example.com", ClientID: "cid", ClientSecret: "cs", RefreshToken: "1//rt-initial"})
			if tc.revoked {
				fp.Revoke("a@example.com")
			}
			rt := tc.rt
			if rt == "" {
				rt = "1//rt-initial"
			}
			lines := []importer.Line{{N: 1, Record: config.AccountRecord{Email: "a@example.com", ClientID: "cid",
				ClientSecret: secret.New("cs"), RefreshToken: secret.New(rt)}}}
			providers := map[string]config.Provider{"gmail": {TokenURL: fp.TokenURL()}}
			var store memStore
			res := importer.Import(context.Background(), lines, &store, importer.Options{
				Check: importer.TokenCheck(providers, 5*time.Second, nil),
			})
			if tc.err != "" {
				if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", res[0].Err, tc.err)
				}
				if len(store.recs) != 0 {
					t.Fatal("an unverified account was saved")
				}
				return
			}
			if res[0].Err != nil {
				t.Fatal(res[0].Err)
			}
			if got, want := store.recs[0].RefreshToken.Reveal(), fp.RefreshToken("a@example.com"); got != want {
				t.Errorf("saved refresh token %q, provider's is %q", got, want)
			}
			if tc.rotate && store.recs[0].RefreshToken.Reveal() == "1//rt-initial" {
				t.Error("the rotated-away refresh token was saved")
			}
		})
	}
}

func TestImport_checksRunBounded(t *testing.T) {
	t.Parallel()
	var lines []importer.Line
	for i := range 40 {
		lines = append(lines, importer.Line{N: i + 1, Record: config.AccountRecord{
			Email: "u" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@example.com", ClientID: "c",
			ClientSecret: secret.New("s"), RefreshToken: secret.New("r")}})
	}
	var now, peak atomic.Int64
	check := func(ctx context.Context, _ *config.AccountRecord) error {
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(time.Millisecond) // let others pile up if the bound were broken
		now.Add(-1)
		return nil
	}
	var out strings.Builder // each Progress serialises its writes; the two steps run one after the other
	progress := func(label string, total int) *importer.Progress {
		return importer.NewProgress(&out, false, label, total)
	}
	var store memStore
	res := importer.Import(context.Background(), lines, &store, importer.Options{Check: check, Concurrency: 3, Progress: progress})
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("line %d: %v", r.Line, r.Err)
		}
	}
	if p := peak.Load(); p > 3 || p < 1 {
		t.Errorf("peak concurrency %d, want 1..3", p)
	}
	for _, want := range []string{"verifying: 4/40 (10%)\n", "verifying: 40/40 (100%)\n", "saving: 40/40 (100%)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, out.String())
		}
	}
}

func TestProgress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		tty   bool
		total int
		adds  []int
		want  []string // substrings, in order
		lines int      // newlines written
	}{
		{name: "plain: a line per tenth", total: 20, adds: repeat(1, 20),
			want: []string{"import: 2/20 (10%)\n", "import: 10/20 (50%)\n", "import: 20/20 (100%)\n"}, lines: 10},
		{name: "plain: big steps skip tenths", total: 250, adds: []int{100, 100, 50},
			want: []string{"import: 100/250 (40%)\n", "import: 200/250 (80%)\n", "import: 250/250 (100%)\n"}, lines: 3},
		{name: "terminal: one redrawn bar", tty: true, total: 4, adds: repeat(1, 4),
			want: []string{"\rimport [>", "\rimport [==============================] 4/4 100%", "\n"}, lines: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			p := importer.NewProgress(&b, tc.tty, "import", tc.total)
			for _, n := range tc.adds {
				p.Add(n)
			}
			p.Finish()
			out, at := b.String(), 0
			for _, w := range tc.want {
				i := strings.Index(out[at:], w)
				if i < 0 {
					t.Fatalf("output lacks %q after byte %d:\n%q", w, at, out)
				}
				at += i + len(w)
			}
			if n := strings.Count(out, "\n"); n != tc.lines {
				t.Errorf("%d lines, want %d:\n%q", n, tc.lines, out)
			}
		})
	}
	var nilProgress *importer.Progress
	nilProgress.Add(1) // a nil Progress shows nothing and does not panic
	nilProgress.Finish()
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

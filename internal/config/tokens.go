package config

import (
	"path/filepath"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// Tokens is the rest of "global.oauth2": background renewal, start-up
// pre-warm and where token state persists. The old tool's
// "powermta_relay" block may set the two worker counts too; the keys under
// "global.oauth2" win.
type Tokens struct {
	// RefreshWorkers bounds concurrent background renewals
	// ("num_token_refresh_workers"); default 25.
	RefreshWorkers int
	// FetchWorkers bounds concurrent start-up fetches
	// ("num_token_fetching_workers"); default 25.
	FetchWorkers int
	// Prewarm picks the accounts whose tokens are fetched at start-up
	// ("token_prewarm"): token.PrewarmRecent (default: those used within
	// the hour before the restart and without a valid persisted token),
	// token.PrewarmAll, or token.PrewarmOff.
	Prewarm token.Prewarm
	// StateDir holds the token state file (token-state.json): rotated
	// refresh tokens and cached access tokens. From LoadOptions.StateDir
	// (--state-dir), else "state_dir" (relative to config.json), else the
	// accounts file's directory. Always absolute.
	StateDir string
}

// defaultTokens are the built-in Tokens; StateDir is resolved by Load.
func defaultTokens() Tokens {
	return Tokens{RefreshWorkers: 25, FetchWorkers: 25, Prewarm: token.PrewarmRecent}
}

// parseTokens reads the token keys of "global.oauth2"; dir is config.json's
// directory.
func parseTokens(o *object, t *Tokens, dir string) {
	o.count("num_token_refresh_workers", 1, &t.RefreshWorkers)
	o.count("num_token_fetching_workers", 1, &t.FetchWorkers)
	var p string
	if o.str("token_prewarm", &p) {
		switch m := token.Prewarm(strings.ToLower(p)); m {
		case token.PrewarmRecent, token.PrewarmAll, token.PrewarmOff:
			t.Prewarm = m
		default:
			o.errorf("token_prewarm", `must be "recent", "all" or "off", not %q`, p)
		}
	}
	if o.str("state_dir", &t.StateDir) && !filepath.IsAbs(t.StateDir) {
		t.StateDir = filepath.Join(dir, t.StateDir)
	}
}

// parsePowerMTARelay reads the two keys of the old "powermta_relay" block
// that still mean something here, and accepts the rest silently: the block
// belonged to a companion program. A block that is not an object is
// ignored, as before.
func parsePowerMTARelay(top *object, t *Tokens) {
	v, ok := top.get("powermta_relay")
	if !ok {
		return
	}
	if _, isObj := v.(map[string]any); !isObj {
		return
	}
	o := newObject(top.d, top.at, "powermta_relay", v)
	o.count("num_token_refresh_workers", 1, &t.RefreshWorkers)
	o.count("num_token_fetching_workers", 1, &t.FetchWorkers)
}

// resolveStateDir fills in Tokens.StateDir: flag, config key, or the
// accounts file's directory.
func resolveStateDir(t *Tokens, flag, accountsPath string) {
	switch {
	case flag != "":
		t.StateDir = flag
	case t.StateDir != "":
	default:
		t.StateDir = filepath.Dir(accountsPath)
	}
	if abs, err := filepath.Abs(t.StateDir); err == nil {
		t.StateDir = abs
	}
}

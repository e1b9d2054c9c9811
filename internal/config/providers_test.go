package config_test

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// perConnWarnings are the warnings about an ignored
// messages_per_minute_per_connection.
func perConnWarnings(ws []config.Warning) []config.Warning {
	var out []config.Warning
	for _, w := range ws {
		if strings.HasSuffix(w.Field, "messages_per_minute_per_connection") {
			out = append(out, w)
		}
	}
	return out
}

// TestLoad_perConnectionRateIgnoredUnderOutlookWarns: the seed
// example_config.json gives every provider the old per-connection rate;
// Outlook's built-in messages_per_minute 30 wins over it, and the operator
// is told so. Gmail and default have no minute budget, so there the old
// key applies and nothing is said.
func TestLoad_perConnectionRateIgnoredUnderOutlookWarns(t *testing.T) {
	t.Parallel()
	_, ws, err := config.Load(config.LoadOptions{
		ConfigPath:   "testdata/seed/example_config.json",
		AccountsPath: "testdata/seed/example_accounts.json",
		SearchDirs:   []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := perConnWarnings(ws)
	if len(got) != 1 {
		t.Fatalf("want one warning, for the outlook block; got %v", got)
	}
	w := got[0]
	if w.Field != "providers.outlook.rate_limiting.messages_per_minute_per_connection" ||
		!strings.Contains(w.Message, "ignored: messages_per_minute 30 (inherited") {
		t.Errorf("warning = %q", w.String())
	}
}

func TestLoad_perConnectionRateInAccounts(t *testing.T) {
	t.Parallel()
	perConn := func(rl map[string]any) map[string]any { rl["messages_per_minute_per_connection"] = 10; return rl }
	tests := []struct {
		name string
		rec  record
		want string // "" for no warning
	}{
		{"outlook inherits 30", outlookRecord("o1", "o@example.com").with("rate_limiting", perConn(map[string]any{})),
			"ignored: messages_per_minute 30 (inherited"},
		{"set beside it", gmailRecord("g1", "g@example.com").with("rate_limiting", perConn(map[string]any{"messages_per_minute": 7})),
			"ignored: messages_per_minute 7 (set in this block)"},
		{"gmail has no minute budget", gmailRecord("g1", "g@example.com").with("rate_limiting", perConn(map[string]any{})), ""},
		{"outlook minute budget lifted", outlookRecord("o1", "o@example.com").with("rate_limiting", perConn(map[string]any{"messages_per_minute": 0})), ""},
		{"budgets off", outlookRecord("o1", "o@example.com").with("rate_limiting", perConn(map[string]any{"enabled": false})), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, ws, err := loadDir(t, writeDir(t, map[string]string{"accounts.json": accountsJSON(t, tc.rec)}))
			if err != nil {
				t.Fatal(err)
			}
			got := perConnWarnings(ws)
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("unexpected warning %q", got[0].String())
			case tc.want != "" && (len(got) != 1 || got[0].Field != "rate_limiting.messages_per_minute_per_connection" ||
				got[0].Account == "" || !strings.Contains(got[0].Message, tc.want)):
				t.Errorf("want one account warning containing %q; got %v", tc.want, got)
			}
		})
	}
}

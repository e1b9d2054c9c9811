package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

func TestNeverPrinted(t *testing.T) {
	t.Parallel()
	const plant = "ya29.PLANTED-SECRET"
	s := secret.New(plant)
	type holder struct {
		Tok secret.String
		P   *secret.String
	}
	h := holder{Tok: s, P: &s}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %#v %s %q", s, h, h, s, s)
	j, _ := json.Marshal(h)
	buf.Write(j)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "tok", s, "h", h)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "tok", s)
	if strings.Contains(buf.String(), plant) {
		t.Fatalf("secret leaked: %s", buf.String())
	}
	if s.Reveal() != plant {
		t.Fatal("Reveal lost the value")
	}
}

// TestReadFromJSON: a secret is read from JSON as its plain value, and a
// round trip writes it back redacted.
func TestReadFromJSON(t *testing.T) {
	t.Parallel()
	var v struct {
		Tok   secret.String `json:"tok"`
		Unset secret.String `json:"unset"`
	}
	if err := json.Unmarshal([]byte(`{"tok": "M.R3-PLANTED", "unset": null}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.Tok.Reveal() != "M.R3-PLANTED" || !v.Unset.Empty() {
		t.Fatalf("read %q and %q", v.Tok.Reveal(), v.Unset.Reveal())
	}
	if err := json.Unmarshal([]byte(`{"tok": 42}`), &v); err == nil {
		t.Error("a number was read as a secret")
	}
	if j, _ := json.Marshal(v); strings.Contains(string(j), "PLANTED") {
		t.Errorf("written back in the clear: %s", j)
	}
}

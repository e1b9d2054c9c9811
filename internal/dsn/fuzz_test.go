package dsn_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/dsn"
)

// FuzzParse: any input is parsed without panic, and a report's failed
// recipients all carry an address, the failed action and a known class.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := dsn.Parse(raw)
		if err != nil {
			if rep != nil {
				t.Fatal("a report with an error")
			}
			return
		}
		for _, r := range rep.Failed {
			if r.Recipient == "" || r.Action != "failed" {
				t.Fatalf("failed recipient %+v", r)
			}
			switch r.Class {
			case dsn.Hard, dsn.Soft, dsn.Policy:
			default:
				t.Fatalf("class %q", r.Class)
			}
		}
	})
}

package smtpd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// TestDialogs runs every script in testdata/dialogs. "C: " lines are sent
// (consecutive ones in a single write, as a pipelining client does) and
// "S: " lines must match the start of the next reply's last line.
func TestDialogs(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/dialogs/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialogs: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			addr := startServer(t, smtpd.Config{MaxMessageBytes: 1 << 20}, &fakeBackend{})
			c := dial(t, addr)
			var out strings.Builder
			for _, line := range strings.Split(string(raw), "\n") {
				switch {
				case strings.HasPrefix(line, "C: "):
					out.WriteString(line[3:] + "\r\n")
				case line == "C:":
					out.WriteString("\r\n")
				case strings.HasPrefix(line, "S: "):
					if out.Len() > 0 {
						c.send(out.String())
						out.Reset()
					}
					c.expect(line[3:])
				}
			}
		})
	}
}

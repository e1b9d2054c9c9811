package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestPMTAConfig: the command reads the files, filters, takes passwords
// from the file and routes to every --proxy; nothing is written.
func TestPMTAConfig(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t, envOptions{})
	pw := filepath.Join(e.dir, "pw.txt")
	writeFile(t, pw, alice+" Pw-of-alice\n")
	var out, errb bytes.Buffer
	code := run(append([]string{"pmta-config"}, append(e.files(), "--proxy", "10.1.1.1:2525", "--proxy", "10.1.1.2:2526", "--password-file", pw, "gmail")...), strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"<virtual-mta vmta-gmail-alice>", "route [10.1.1.1]:2525,[10.1.1.2]:2526", "auth-username " + alice,
		"auth-password Pw-of-alice", "max-smtp-out 10", "<virtual-mta-pool xoauth2-proxy>", "    virtual-mta vmta-gmail-alice"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if code := run(append([]string{"pmta-config"}, append(e.files(), "outlook")...), strings.NewReader(""), &out, &errb); code != 1 || !strings.Contains(errb.String(), "no account matches") {
		t.Errorf("a filter matching nothing: exit %d, %s", code, errb.String())
	}
}

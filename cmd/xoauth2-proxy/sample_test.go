package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// check-config refuses the sample accounts file that the packages install
// and says what to do; the same accounts without the marker pass. The
// systemd unit runs check-config before starting (ExecStartPre).
func TestCheckConfig_refusesSampleAccounts(t *testing.T) {
	t.Parallel()
	const acct = `{"account_id":"a1","email":"a@example.com","provider":"gmail","client_id":"c","client_secret":"s","refresh_token":"r"}`
	example, err := os.ReadFile("../../examples/accounts.json")
	if err != nil {
		t.Fatal(err)
	}
	withoutMarker := strings.Replace(string(example), `"`+sampleKey+`"`, `"_was_sample"`, 1)
	if withoutMarker == string(example) {
		t.Fatalf("examples/accounts.json has no %q key: the packages would install a sample the unit starts on", sampleKey)
	}
	for _, tc := range []struct {
		name, accounts string
		refused        bool
	}{
		{"the installed sample (examples/accounts.json)", string(example), true},
		{"the sample with its marker deleted", withoutMarker, false},
		{"an object with the marker", `{"_sample": "x", "accounts": [` + acct + `]}`, true},
		{"an object without it", `{"_comment": "mine", "accounts": [` + acct + `]}`, false},
		{"an array of accounts (the old tool's shape)", `[` + acct + `]`, false},
		{"the marker inside an account is not the file's", `[{"_sample": "x",` + acct[1:] + `]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "accounts.json")
			writeFile(t, path, tc.accounts)
			code, out, errs := runCmd(t, "", "check-config", "--config", "../../examples/config.json", "--accounts", path)
			if !strings.Contains(out, "accounts: "+path) {
				t.Errorf("no summary (the file must still parse):\n%s\n%s", out, errs)
			}
			if !tc.refused {
				if code != 0 || !strings.Contains(out, "configuration OK") {
					t.Fatalf("exit %d\n%s\n%s", code, out, errs)
				}
				return
			}
			if code != 1 || strings.Contains(out, "configuration OK") {
				t.Fatalf("sample accepted: exit %d\n%s", code, out)
			}
			for _, want := range []string{"edit " + path + ": it still holds the sample accounts", `delete its "_sample" line`, "systemctl start xoauth2-proxy"} {
				if !strings.Contains(errs, want) {
					t.Errorf("message lacks %q: %s", want, errs)
				}
			}
		})
	}
}

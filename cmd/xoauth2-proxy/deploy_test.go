package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The command lines that the systemd unit (and so the packages) and the
// Dockerfile run are ones this binary accepts: each, with -h appended,
// parses every flag and stops at the help. A renamed flag fails here, not
// at an operator's first start.
func TestDeployFiles_commandLinesParse(t *testing.T) {
	t.Parallel()
	var lines [][]string
	unit := readJoined(t, "../../deploy/xoauth2-proxy.service")
	for _, l := range strings.Split(unit, "\n") {
		for _, key := range []string{"ExecStart=", "ExecStartPre="} {
			if cmd, ok := strings.CutPrefix(l, key); ok {
				f := strings.Fields(cmd)
				if f[0] != "/usr/local/bin/xoauth2-proxy" {
					t.Errorf("unit: %s runs %s, not /usr/local/bin/xoauth2-proxy (make packages rewrites that path)", key, f[0])
				}
				lines = append(lines, f[1:])
			}
		}
	}
	if len(lines) != 2 {
		t.Fatalf("unit: %d ExecStart/ExecStartPre lines, want 2", len(lines))
	}
	docker := readJoined(t, "../../Dockerfile")
	i := strings.Index(docker, "\nCMD [")
	if i < 0 {
		t.Fatal("Dockerfile: no CMD [...]")
	}
	cmd := docker[i+len("\nCMD "):]
	cmd = cmd[:strings.Index(cmd, "]")+1]
	var args []string
	if err := json.Unmarshal([]byte(cmd), &args); err != nil {
		t.Fatalf("Dockerfile CMD %s: %v", cmd, err)
	}
	lines = append(lines, args)
	for i, args := range lines {
		t.Run(fmt.Sprintf("%d %s", i, args[0]), func(t *testing.T) {
			t.Parallel()
			code, out, errs := runCmd(t, "", append(args, "-h")...)
			if code != 0 || !strings.Contains(out+errs, "\nExample:\n") {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
		})
	}
}

// readJoined reads a file with its backslash-newline continuations joined.
func readJoined(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\\\n", " ")
}

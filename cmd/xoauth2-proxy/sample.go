package main

import (
	"encoding/json"
	"fmt"
	"os"
)

// sampleKey marks the sample accounts file (examples/accounts.json, which
// the .deb and .rpm install as /etc/xoauth2/accounts.json): a top-level
// key of the {"accounts": [...]} object. The loader ignores it like every
// "_" key; check-config refuses the file while it is there, and the
// systemd unit runs check-config before every start, so the service does
// not start on accounts that cannot send.
const sampleKey = "_sample"

// sampleError is check-config's answer to the unedited sample file: what
// to do, not only what is wrong.
func sampleError(path string) error {
	return fmt.Errorf("edit %s: it still holds the sample accounts. Put your accounts there "+
		"(\"xoauth2-proxy accounts add -h\", or copy in the old tool's accounts.json), delete its %q line, "+
		"run check-config again, then start the service (systemctl start xoauth2-proxy); "+
		"README \"Install from a package\"", path, sampleKey)
}

// holdsSample reports whether the accounts file at path carries sampleKey.
// A file that is not a JSON object (an array of accounts) carries none;
// config.Load has already judged whether it parses.
func holdsSample(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) != nil {
		return false, nil
	}
	_, ok := top[sampleKey]
	return ok, nil
}

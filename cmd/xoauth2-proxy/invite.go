package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// invite creates invitation links through a running proxy's admin API and
// prints them as CSV (email,link,expires_at) for the operator to send.
func (a *accountsCmd) invite(ctx context.Context, args []string) error {
	fs := a.flags("invite", "usage: xoauth2-proxy accounts invite --admin-url URL [flags] EMAIL|ACCOUNT_ID... | --csv FILE\n\n"+
		"Creates an invitation per account on the running proxy (its onboarding listener must be\n"+
		"configured) and prints email,link,expires_at as CSV. Each link is single use, for that\n"+
		"account only, and is shown only now: send it to the mailbox owner. --csv reads the accounts\n"+
		"from the first column of FILE (\"-\": stdin; a first row \"email\" is a header).",
		"xoauth2-proxy accounts invite --admin-url http://127.0.0.1:9090 --csv owners.csv > links.csv")
	csvFile := fs.String("csv", "", "read the accounts from the first column of this CSV file")
	ttl := fs.Duration("ttl", 0, "lifetime of each invitation (default: the proxy's, 7 days)")
	names, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if *csvFile != "" {
		more, err := a.readInviteCSV(*csvFile)
		if err != nil {
			return err
		}
		names = append(names, more...)
	}
	if len(names) == 0 {
		return errors.New("accounts invite: give emails or account ids, or --csv FILE")
	}
	cl, err := a.admin()
	if err != nil {
		return err
	}
	if cl == nil {
		return errors.New("accounts invite: needs --admin-url: invitations live in the running proxy")
	}
	out := csv.NewWriter(a.stdout)
	_ = out.Write([]string{"email", "link", "expires_at"})
	failed := 0
	for len(names) > 0 {
		n := min(len(names), 1000)
		created, bad, err := cl.Invite(ctx, names[:n], *ttl)
		if err != nil {
			out.Flush()
			return fmt.Errorf("accounts invite: %w", err)
		}
		for _, inv := range created {
			_ = out.Write([]string{inv.Email, inv.Link.Reveal(), inv.ExpiresAt.UTC().Format(time.RFC3339)})
		}
		for _, f := range bad {
			fmt.Fprintf(a.stderr, "%s: %s\n", f.Account, f.Error)
		}
		failed += len(bad)
		names = names[n:]
	}
	out.Flush()
	if err := out.Error(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("accounts invite: %d accounts not invited", failed)
	}
	return nil
}

func (a *accountsCmd) readInviteCSV(path string) ([]string, error) {
	var r io.Reader = a.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("accounts invite: %w", err)
		}
		defer f.Close()
		r = f
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("accounts invite: %s: %w", path, err)
	}
	var names []string
	for i, row := range rows {
		v := strings.TrimSpace(row[0])
		if v == "" || (i == 0 && strings.EqualFold(v, "email")) {
			continue
		}
		names = append(names, v)
	}
	return names, nil
}

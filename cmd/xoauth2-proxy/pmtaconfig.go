package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pmtaconfig"
)

// proxyList is a repeatable --proxy flag.
type proxyList []string

func (p *proxyList) String() string     { return strings.Join(*p, ",") }
func (p *proxyList) Set(v string) error { *p = append(*p, v); return nil }

// runPMTAConfig prints the PowerMTA virtual MTAs for the accounts.
func runPMTAConfig(args []string, stdout, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("pmta-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "usage: xoauth2-proxy pmta-config [flags] [EMAIL|ACCOUNT_ID|PROVIDER...]\n\n"+
		"Prints PowerMTA's side for the accounts (all, or those named, or of a provider): one <virtual-mta>\n"+
		"per account routed to the proxy, logging in as the account, with max-smtp-out = the account's\n"+
		"upstream session cap, and a <virtual-mta-pool>. It never writes PowerMTA's files. The proxy keeps\n"+
		"only password hashes: give the clear-text passwords in --password-file (lines \"EMAIL PASSWORD\"),\n"+
		"or replace the REPLACE-WITH-... placeholders.",
		"xoauth2-proxy pmta-config --accounts /etc/xoauth2/accounts.json --proxy 10.0.0.5:2525 --proxy 10.0.0.6:2525 --password-file pw.txt")
	fs.StringVar(&c.config, "config", "config.json", "global configuration file (the providers' session caps)")
	fs.StringVar(&c.accounts, "accounts", "accounts.json", "accounts file")
	var proxies proxyList
	fs.Var(&proxies, "proxy", "the proxy's SMTP listener as PowerMTA reaches it, host:port; repeat for several proxies (default 127.0.0.1:2525)")
	pwFile := fs.String("password-file", "", `clear-text AUTH passwords, one "EMAIL PASSWORD" a line`)
	pool := fs.String("pool", "xoauth2-proxy", "name of the <virtual-mta-pool>")
	starttls := fs.Bool("starttls", false, "use and require STARTTLS to the proxy (a proxy on another host)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { c.explicitConfig = c.explicitConfig || f.Name == "config" })
	if len(proxies) == 0 {
		proxies = proxyList{"127.0.0.1:2525"}
	}
	snap, _, err := config.Load(c.loadOptions())
	if err != nil {
		return err
	}
	o := pmtaconfig.Options{Proxies: proxies, Pool: *pool, StartTLS: *starttls}
	if *pwFile != "" {
		f, err := os.Open(*pwFile)
		if err != nil {
			return fmt.Errorf("pmta-config: %w", err)
		}
		o.Passwords, err = pmtaconfig.ParsePasswords(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("pmta-config: %s: %w", *pwFile, err)
		}
	}
	accts := snap.Accounts
	if len(pos) > 0 {
		accts = nil
		for _, a := range snap.Accounts {
			for _, p := range pos {
				if a.ID == p || strings.EqualFold(a.Email, p) || strings.EqualFold(a.Provider, p) {
					accts = append(accts, a)
					break
				}
			}
		}
		if len(accts) == 0 {
			return errors.New("pmta-config: no account matches " + strings.Join(pos, ", "))
		}
	}
	return pmtaconfig.Write(stdout, accts, o)
}

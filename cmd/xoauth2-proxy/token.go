package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/probe"
)

// probeFlags are the flags of token and send: where the files are, how
// long to try, whether to show the service's log.
type probeFlags struct {
	c       common
	timeout time.Duration
	verbose bool
}

func (p *probeFlags) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&p.c.config, "config", "config.json", "global configuration file")
	fs.StringVar(&p.c.accounts, "accounts", "accounts.json", "accounts file")
	fs.StringVar(&p.c.stateDir, "state-dir", "", "token state directory, the same as serve's (default: global.oauth2.state_dir, else the accounts file's directory)")
	fs.DurationVar(&p.timeout, "timeout", timeout, "give up after this long")
	fs.BoolVar(&p.verbose, "v", false, "log token requests and upstream sessions to stderr")
}

func (p *probeFlags) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			p.c.explicitConfig = true
		}
	})
	return pos, nil
}

// open loads the files and builds the accounts as serve does.
func (p *probeFlags) open(stderr io.Writer) (*probe.Probe, context.Context, func(), error) {
	var log *slog.Logger
	if p.verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	pr, err := probe.Open(probe.Options{Load: p.c.loadOptions(), Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	return pr, ctx, func() { cancel(); stop(); pr.Close() }, nil
}

func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "usage: xoauth2-proxy token [flags] EMAIL|ACCOUNT_ID\n\n"+
		"Makes a token request for the account now, as the proxy would, and prints the token's expiry and state.",
		"sudo -u xoauth2-proxy xoauth2-proxy token --config /etc/xoauth2/config.json --accounts /etc/xoauth2/accounts.json sales@example.com")
	var p probeFlags
	p.register(fs, 30*time.Second)
	show := fs.Bool("show", false, "print the access token itself (it grants access to the mailbox: mind your terminal and shell history)")
	pos, err := p.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("token: give one email or account id")
	}
	pr, ctx, done, err := p.open(stderr)
	if err != nil {
		return err
	}
	defer done()
	rep, err := pr.Token(ctx, pos[0])
	if rep.Account == nil {
		return err
	}
	a, st := rep.Account, rep.Status
	fmt.Fprintf(stdout, "account:      %s <%s> (%s)\n", a.ID, a.Email, a.Provider)
	fmt.Fprintf(stdout, "token url:    %s\n", a.TokenURL)
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	fmt.Fprintf(stdout, "request:      %s in %v\n", outcome, rep.Duration.Round(time.Millisecond))
	fmt.Fprintf(stdout, "state:        %s\n", st.State)
	if !st.Expiry.IsZero() {
		fmt.Fprintf(stdout, "expires:      %s (in %v)\n", st.Expiry.UTC().Format(time.RFC3339), time.Until(st.Expiry).Round(time.Second))
	}
	if st.LastError != "" {
		fmt.Fprintf(stdout, "last error:   %s\n", st.LastError)
	}
	if err != nil {
		return fmt.Errorf("token %s: %w", a.Email, err)
	}
	if *show {
		fmt.Fprintf(stdout, "access token: %s\n", rep.Access.Reveal())
	} else {
		fmt.Fprintf(stdout, "access token: %d bytes, not shown (--show prints it)\n", len(rep.Access.Reveal()))
	}
	return nil
}

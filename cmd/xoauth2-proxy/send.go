package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/probe"
)

// addrList is a repeatable flag of addresses; commas separate several.
type addrList []string

func (l *addrList) String() string { return strings.Join(*l, ",") }

func (l *addrList) Set(v string) error {
	for a := range strings.SplitSeq(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			*l = append(*l, a)
		}
	}
	return nil
}

func runSend(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "usage: xoauth2-proxy send --account EMAIL --to ADDR [flags]\n\n"+
		"Sends one test message through the account's real upstream path (token, session, AUTH, as the\n"+
		"proxy opens them) and prints every reply of the provider.",
		"sudo -u xoauth2-proxy xoauth2-proxy send --config /etc/xoauth2/config.json --accounts /etc/xoauth2/accounts.json "+
			"--account sales@example.com --to you@example.net")
	var p probeFlags
	p.register(fs, 2*time.Minute)
	var m probe.Message
	var to addrList
	acct := fs.String("account", "", "the account (email or account_id) to send as (required)")
	fs.Var(&to, "to", "recipient (repeat or separate with commas; required)")
	fs.StringVar(&m.From, "from", "", "envelope sender and From header (default: the account's email)")
	fs.StringVar(&m.Subject, "subject", "xoauth2-proxy test message", "subject")
	fs.StringVar(&m.Body, "body", "This is a test message sent by xoauth2-proxy send.\n", "message text")
	pos, err := p.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("send: unexpected argument %q", pos[0])
	}
	if *acct == "" || len(to) == 0 {
		fs.Usage()
		return errors.New("send: --account and --to are required")
	}
	m.To = to
	pr, ctx, done, err := p.open(stderr)
	if err != nil {
		return err
	}
	defer done()
	rep, err := pr.Send(ctx, *acct, m)
	if a := rep.Account; a != nil {
		fmt.Fprintf(stdout, "account:  %s <%s> via %s (%s, %s)\n", a.ID, a.Email, a.SMTPAddr, a.TLS, a.Mechanism)
	}
	if rep.Session > 0 {
		fmt.Fprintf(stdout, "session:  opened and authenticated in %v\n", rep.Session.Round(time.Millisecond))
	}
	for _, s := range rep.Steps {
		fmt.Fprintf(stdout, "%-40s -> %s\n", s.Command, s.Reply)
	}
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if rep.Final == nil {
		return errors.New("send: the provider refused the transaction before the message (see the replies above)")
	}
	fmt.Fprintf(stdout, "final reply: %s\n", rep.Final)
	if !rep.Delivered() {
		return errors.New("send: the provider did not accept the message")
	}
	return nil
}

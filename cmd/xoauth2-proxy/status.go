package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/adminclient"
)

// statusStates are the account states in the order status prints them.
var statusStates = []string{"ok", "refreshing", "retrying", "needs_consent", "disabled", "cooling_down"}

// runStatus prints a running proxy's overview and the accounts needing
// attention (GET /admin/overview), for operators on SSH.
func runStatus(args []string, stdout, stderr io.Writer) error {
	a := &accountsCmd{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "usage: xoauth2-proxy status [--admin-url URL] [--admin-token-file FILE]\n\n"+
		"Prints a running proxy's overview, as the console's first page shows it: messages accepted,\n"+
		"deferred and rejected, upstream sessions, accounts by state, and the accounts that need\n"+
		"attention with the reason.",
		"xoauth2-proxy status --admin-url http://127.0.0.1:9090 --admin-token-file /etc/xoauth2/admin-token")
	fs.StringVar(&a.adminURL, "admin-url", "http://127.0.0.1:9090", "the running proxy's admin API")
	fs.StringVar(&a.c.adminTokenFile, "admin-token-file", "", adminTokenFileHelp)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("status: unexpected argument %q", fs.Arg(0))
	}
	cl, err := a.admin()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ov, err := cl.Overview(ctx)
	var apiErr *adminclient.Error
	if errors.As(err, &apiErr) && apiErr.Status == 404 {
		return errors.New("status: this proxy has no /admin/overview (older version?)")
	}
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	printStatus(stdout, ov)
	return nil
}

// printStatus writes the overview as terminal tables.
func printStatus(w io.Writer, ov adminclient.Overview) {
	fmt.Fprintf(w, "xoauth2-proxy at %s: %d accounts, %d upstream sessions in use (%d open), %d messages in flight\n\n",
		ov.At.UTC().Format("2006-01-02 15:04:05 UTC"), ov.Accounts, ov.SessionsBusy, ov.SessionsOpen, ov.InFlight)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGES\tSINCE START\tLAST HOUR")
	fmt.Fprintf(tw, "accepted\t%d\t%d\n", ov.Totals.Accepted, ov.LastHour.Accepted)
	fmt.Fprintf(tw, "deferred\t%d\t%d\n", ov.Totals.Deferred, ov.LastHour.Deferred)
	fmt.Fprintf(tw, "rejected\t%d\t%d\n", ov.Totals.Rejected, ov.LastHour.Rejected)
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "ACCOUNTS BY STATE\tCOUNT")
	for _, s := range statusStates {
		fmt.Fprintf(tw, "%s\t%d\n", s, ov.ByState[s])
	}
	tw.Flush()
	fmt.Fprintln(w)
	if ov.AttentionTotal == 0 {
		fmt.Fprintln(w, "No account needs attention.")
		return
	}
	fmt.Fprintf(w, "Needing attention: %d", ov.AttentionTotal)
	if len(ov.Attention) < ov.AttentionTotal {
		fmt.Fprintf(w, " (the first %d)", len(ov.Attention))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "ACCOUNT\tSTATE\tWHY")
	for _, a := range ov.Attention {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Email, a.State, a.Reason)
	}
	tw.Flush()
}

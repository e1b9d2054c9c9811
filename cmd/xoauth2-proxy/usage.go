package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one subcommand: what --help says of it in one line, and what
// runs it.
type command struct {
	name, synopsis string
	run            func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order --help shows them. run
// dispatches from the same list, so the two cannot disagree.
func commands() []command {
	return []command{
		{"serve", "relay SMTP from PowerMTA or Postfix to Gmail and Microsoft 365 (the default without a command)",
			func(args []string, _ io.Reader, _, stderr io.Writer) error { return serve(args, stderr) }},
		{"check-config", "validate config.json and accounts.json (every problem, by file, account and field)",
			func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return checkConfig(args, stdout, stderr)
			}},
		{"hash-password", "read a password, print the bcrypt hash for an account's smtp_password", hashPassword},
		{"accounts", "list, add, remove or import accounts, in the files or through a running proxy", runAccounts},
		{"pmta-config", "print PowerMTA virtual MTAs for the accounts (routes to the proxy, AUTH, session caps)",
			func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runPMTAConfig(args, stdout, stderr)
			}},
		{"token", "fetch an access token for one account now; print its expiry and state",
			func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runToken(args, stdout, stderr)
			}},
		{"send", "send one test message through one account's real upstream",
			func(args []string, _ io.Reader, stdout, stderr io.Writer) error { return runSend(args, stdout, stderr) }},
		{"status", "print a running proxy's overview and the accounts needing attention (admin API)",
			func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runStatus(args, stdout, stderr)
			}},
		{"demo", "the proxy in front of a built-in fake provider, with a batch of test mail",
			func(args []string, _ io.Reader, stdout, stderr io.Writer) error { return runDemo(args, stdout, stderr) }},
		{"bench", "measure the proxy against direct delivery (README \"Benchmark\")",
			func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runBench(args, stdout, stderr)
			}},
		{"version", "print the version",
			func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runVersion(args, stdout, stderr)
			}},
	}
}

// lookup returns the subcommand called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// commandNames is "serve, check-config, ..." for error messages.
func commandNames() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// isHelp reports whether arg asks for the top-level usage.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

// printUsage is "xoauth2-proxy --help": the subcommands, one line each,
// then the flags of serve, which runs when no command is given.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "usage: xoauth2-proxy [COMMAND] [flags]\n\n"+
		"An SMTP relay: clients log in with AUTH PLAIN/LOGIN, the proxy sends through Gmail and\n"+
		"Microsoft 365 with OAuth2 (XOAUTH2). README.md, or /usr/share/doc/xoauth2-proxy/ where a\n"+
		"package installed it, says more.\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.synopsis)
	}
	fmt.Fprint(w, "\n\"xoauth2-proxy COMMAND -h\" shows a command's flags and an example.\n\n"+
		"Flags of serve, the default command:\n")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(w)
	new(common).register(fs)
	fs.PrintDefaults()
	fmt.Fprint(w, "\nExample:\n  "+serveExample+"\n")
}

// setUsage makes fs.Usage print head (the usage line, a blank line, what
// the command does), the flags, and last an example under "Example:".
func setUsage(fs *flag.FlagSet, head, example string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, strings.TrimRight(head, "\n")+"\n\n")
		fs.PrintDefaults()
		fmt.Fprint(w, "\nExample:\n  "+example+"\n")
	}
}

// The examples that end each command's -h. The paths are where the
// packages install the files (README "Install from a package").
const (
	serveExample = "xoauth2-proxy serve --config /etc/xoauth2/config.json --accounts /etc/xoauth2/accounts.json --host 127.0.0.1 --port 2525"
	checkExample = "sudo -u xoauth2-proxy xoauth2-proxy check-config --config /etc/xoauth2/config.json --accounts /etc/xoauth2/accounts.json"
)

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "usage: xoauth2-proxy version\n\nPrints the version the binary was built from (git describe).", "xoauth2-proxy version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("version: unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintln(stdout, "xoauth2-proxy", version)
	return nil
}

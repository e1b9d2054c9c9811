package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/adminclient"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

const accountsUsage = `usage: xoauth2-proxy accounts COMMAND [flags]

  list                          list the accounts (--json for JSON)
  add --email ADDR [flags]      add one account (--client-id, --client-secret-file, --refresh-token-file, ...)
  remove EMAIL|ACCOUNT_ID...    remove accounts
  import FILE|-                 add the accounts of an import file (old format:
                                email,account_id,refresh_token,client_id[,client_secret][,ip_address])
  authorize EMAIL               get the owner's OAuth consent here and store the refresh token (--device)
  invite EMAIL...|--csv FILE    invitation links for remote owners (--admin-url; prints CSV)

Without --admin-url the commands edit accounts.json (--accounts, --config, found as serve finds
them); a running proxy applies the change at its next reload (systemctl reload, SIGHUP). With
--admin-url http://127.0.0.1:9090 they go through the running proxy's admin API, which saves
and reloads; the bearer token comes from --admin-token-file or XOAUTH2_PROXY_ADMIN_TOKEN.
"xoauth2-proxy accounts COMMAND -h" lists each command's flags.

` + secretsHelp + `
Example:
  xoauth2-proxy accounts list --accounts /etc/xoauth2/accounts.json
`

// progressThreshold: imports of more records than this show progress.
const progressThreshold = 5

// accountsCmd holds the flags every accounts command takes.
type accountsCmd struct {
	c        common
	adminURL string
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	getenv   func(string) string // os.Getenv
}

func runAccounts(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, accountsUsage)
		if len(args) == 0 {
			return errors.New("accounts: missing command")
		}
		return nil
	}
	a := &accountsCmd{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch sub, rest := args[0], args[1:]; sub {
	case "list", "ls":
		return a.list(ctx, rest)
	case "add":
		return a.add(ctx, rest)
	case "remove", "rm", "delete":
		return a.remove(ctx, rest)
	case "import":
		return a.importFile(ctx, rest)
	case "authorize":
		return a.authorize(ctx, rest)
	case "invite":
		return a.invite(ctx, rest)
	default:
		fmt.Fprint(stderr, accountsUsage)
		return fmt.Errorf("accounts: unknown command %q", sub)
	}
}

// flags registers the flags every accounts command has, and its -h:
// head, the flags, example (setUsage).
func (a *accountsCmd) flags(name, head, example string) *flag.FlagSet {
	fs := flag.NewFlagSet("accounts "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	setUsage(fs, head, example)
	fs.StringVar(&a.c.config, "config", "config.json", "global configuration file (provider defaults for validation)")
	fs.StringVar(&a.c.accounts, "accounts", "accounts.json", "accounts file to read or change")
	fs.StringVar(&a.adminURL, "admin-url", "", "work on a running proxy through its admin API, e.g. http://127.0.0.1:9090")
	fs.StringVar(&a.c.adminTokenFile, "admin-token-file", "", adminTokenFileHelp)
	return fs
}

// parse parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func (a *accountsCmd) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			a.c.explicitConfig = true
		}
	})
	return pos, nil
}

// parseInterspersed is fs.Parse that lets flags follow positional
// arguments ("accounts remove a@x --admin-url ..."); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// admin returns the admin API client, or nil when --admin-url is not set.
func (a *accountsCmd) admin() (*adminclient.Client, error) {
	if a.adminURL == "" {
		return nil, nil
	}
	tok, err := a.c.adminToken()
	if err != nil {
		return nil, err
	}
	return adminclient.New(a.adminURL, tok)
}

// load reads the files as serve would. With create, a missing accounts
// file (at --accounts and in every place serve looks) is created empty
// first, so the first import needs no hand-made file.
func (a *accountsCmd) load(create bool) (*config.Snapshot, error) {
	snap, _, err := config.Load(a.c.loadOptions())
	if err == nil || !create || !errors.Is(err, fs.ErrNotExist) || accountsFileExists(a.c.accounts) {
		return snap, err
	}
	if _, cerr := os.Stat(a.c.config); a.c.explicitConfig && cerr != nil {
		return nil, err // the missing file is the config: creating accounts.json would not help
	}
	f, cerr := os.OpenFile(a.c.accounts, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if cerr != nil {
		return nil, err
	}
	_, werr := f.WriteString("[]\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, werr
	}
	fmt.Fprintf(a.stderr, "created %s\n", a.c.accounts)
	snap, _, err = config.Load(a.c.loadOptions())
	return snap, err
}

// accountsFileExists reports whether serve would find an accounts file
// for --accounts path.
func accountsFileExists(path string) bool {
	for _, p := range append([]string{path}, searchPaths(filepath.Base(path))...) {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

func searchPaths(base string) []string {
	var out []string
	for _, d := range config.DefaultSearchDirs() {
		out = append(out, filepath.Join(d, base))
	}
	return out
}

// reloadHint tells the operator that a running proxy has not seen a file change yet.
func (a *accountsCmd) reloadHint(path string) {
	fmt.Fprintf(a.stderr, "%s changed; a running proxy applies it at its next reload "+
		"(systemctl reload xoauth2-proxy, kill -HUP, or POST /admin/reload)\n", path)
}

func (a *accountsCmd) list(ctx context.Context, args []string) error {
	fs := a.flags("list", "usage: xoauth2-proxy accounts list [--json] [flags]\n\n"+
		"Lists the accounts: from accounts.json, or with --admin-url from a running proxy, with their state.",
		"xoauth2-proxy accounts list --admin-url http://127.0.0.1:9090 --admin-token-file /etc/xoauth2/admin-token")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if _, err := a.parse(fs, args); err != nil {
		return err
	}
	cl, err := a.admin()
	if err != nil {
		return err
	}
	var list []adminclient.Account
	if cl != nil {
		if list, err = cl.List(ctx); err != nil {
			return err
		}
	} else {
		snap, err := a.load(false)
		if err != nil {
			return err
		}
		for _, c := range snap.Accounts {
			v := adminclient.Account{AccountID: c.ID, Email: c.Email, VMTAName: c.VMTAName, Provider: c.Provider,
				OAuthEndpoint: c.SMTPAddr, OAuthTokenURL: c.TokenURL}
			if c.IPAddress.IsValid() {
				v.IPAddress = c.IPAddress.String()
			}
			list = append(list, v)
		}
	}
	if *asJSON {
		if list == nil {
			list = []adminclient.Account{}
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tACCOUNT_ID\tPROVIDER\tIP_ADDRESS\tVMTA_NAME\tENDPOINT")
	for _, v := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Email, v.AccountID, v.Provider, dash(v.IPAddress), dash(v.VMTAName), v.OAuthEndpoint)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "%d accounts\n", len(list))
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// importOptions are the flags add and import share.
type importOptions struct {
	provider    string
	verify      bool
	overwrite   bool
	concurrency int
}

func (o *importOptions) register(fs *flag.FlagSet, bulk bool) {
	fs.BoolVar(&o.verify, "verify", false, "make a real token request for each account before saving it")
	fs.BoolVar(&o.overwrite, "overwrite", false, "update accounts that exist (same email or account_id): the fields given change, the rest of the record stays")
	if bulk {
		fs.StringVar(&o.provider, "provider", "", "provider of the domains that are not gmail.com/googlemail.com or Microsoft's personal ones "+
			"(outlook.com, hotmail.com, live.com, msn.com and country variants): gmail (default: Google Workspace) or outlook (Microsoft 365)")
		fs.IntVar(&o.concurrency, "concurrency", importer.DefaultConcurrency, "token requests at once with --verify (on files; the admin API verifies 8 at once)")
	}
}

// store returns where records go and the verification to run first.
func (a *accountsCmd) store(o importOptions) (importer.Store, importer.Check, string, error) {
	cl, err := a.admin()
	if err != nil {
		return nil, nil, "", err
	}
	if cl != nil {
		return importer.AdminStore{Client: cl, Verify: o.verify}, nil, "", nil
	}
	snap, err := a.load(true)
	if err != nil {
		return nil, nil, "", err
	}
	var check importer.Check
	if o.verify {
		check = importer.TokenCheck(snap.Providers, snap.Global.Timeouts.OAuth2, nil)
	}
	return importer.FileStore{AccountsPath: snap.AccountsPath, ConfigPath: snap.ConfigPath}, check, snap.AccountsPath, nil
}

func (a *accountsCmd) add(ctx context.Context, args []string) error {
	fs := a.flags("add", "usage: xoauth2-proxy accounts add --email ADDR --client-id ID --refresh-token-file PATH [flags]\n\n"+secretsHelp,
		"xoauth2-proxy accounts add --accounts /etc/xoauth2/accounts.json --email sales@example.com "+
			"--client-id ID.apps.googleusercontent.com --client-secret-file secret.txt --refresh-token-file token.txt")
	var o importOptions
	o.register(fs, false)
	var r config.AccountRecord
	var clientSecret, refreshToken, smtpPassword secretFlag
	fs.StringVar(&r.Email, "email", "", "the mailbox (required); also the SMTP AUTH username")
	fs.StringVar(&r.Provider, "provider", "", "gmail or outlook; default: guessed from the domain (gmail.com → gmail, "+
		"hotmail.com, outlook.com, live.com, msn.com → outlook), otherwise gmail (Google Workspace)")
	fs.StringVar(&r.ClientID, "client-id", "", "OAuth client id (required)")
	clientSecret.register(fs, "client-secret", "OAuth client secret (required for gmail)")
	refreshToken.register(fs, "refresh-token", "OAuth refresh token (required)")
	fs.StringVar(&r.AccountID, "account-id", "", "default: <provider>_<email with @ and . as _>")
	fs.StringVar(&r.VMTAName, "vmta-name", "", "default: vmta-<provider>-<local part>")
	fs.StringVar(&r.IPAddress, "ip-address", "", "source address of this account's upstream sessions")
	fs.StringVar(&r.TokenURL, "token-url", "", "oauth_token_url; default: the provider's (login.live.com for personal Microsoft domains)")
	fs.StringVar(&r.Endpoint, "endpoint", "", "oauth_endpoint, upstream host:port; default: the provider's")
	smtpPassword.register(fs, "smtp-password", "smtp_password: a bcrypt hash from hash-password (plain text works, with a warning)")
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("accounts add: unexpected argument %q (give the address with --email)", pos[0])
	}
	in := &secretInput{stdin: a.stdin, stderr: a.stderr, getenv: a.getenv}
	for _, f := range []struct {
		flag *secretFlag
		dst  *secret.String
	}{{&clientSecret, &r.ClientSecret}, {&refreshToken, &r.RefreshToken}, {&smtpPassword, &r.SMTPPassword}} {
		if *f.dst, err = in.read(f.flag); err != nil {
			return fmt.Errorf("accounts add: %w", err)
		}
	}

	store, check, path, err := a.store(o)
	if err != nil {
		return err
	}
	res := importer.Import(ctx, []importer.Line{{Record: r}}, store, importer.Options{
		Provider: o.provider, Overwrite: o.overwrite, Check: check, Concurrency: o.concurrency,
	})
	if err := res[0].Err; err != nil {
		return fmt.Errorf("accounts add %s: %w", r.Email, err)
	}
	fmt.Fprintf(a.stdout, "added %s\n", r.Email)
	if path != "" {
		a.reloadHint(path)
	}
	return nil
}

func (a *accountsCmd) remove(ctx context.Context, args []string) error {
	fs := a.flags("remove", "usage: xoauth2-proxy accounts remove [flags] EMAIL|ACCOUNT_ID...\n\n"+
		"Removes the accounts from accounts.json, or with --admin-url from a running proxy.",
		"xoauth2-proxy accounts remove --accounts /etc/xoauth2/accounts.json sales@example.com")
	names, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return errors.New("accounts remove: give one or more emails or account ids")
	}
	cl, err := a.admin()
	if err != nil {
		return err
	}
	failed := 0
	if cl != nil {
		for _, n := range names {
			if err := cl.Remove(ctx, n); err != nil {
				fmt.Fprintf(a.stdout, "%s: %v\n", n, err)
				failed++
				continue
			}
			fmt.Fprintf(a.stdout, "removed %s\n", n)
		}
	} else {
		snap, err := a.load(false)
		if err != nil {
			return err
		}
		var removed, missing []string
		err = config.EditAccounts(snap.AccountsPath, snap.ConfigPath, func(f *config.AccountsFile) error {
			removed, missing = nil, nil
			for _, n := range names {
				if f.Remove(f.Find(n)) != nil {
					missing = append(missing, n)
				} else {
					removed = append(removed, n)
				}
			}
			if len(removed) == 0 {
				return config.ErrNoAccount
			}
			return nil
		})
		if err != nil && !errors.Is(err, config.ErrNoAccount) {
			return err
		}
		for _, n := range removed {
			fmt.Fprintf(a.stdout, "removed %s\n", n)
		}
		for _, n := range missing {
			fmt.Fprintf(a.stdout, "%s: %v\n", n, config.ErrNoAccount)
		}
		failed = len(missing)
		if len(removed) > 0 {
			a.reloadHint(snap.AccountsPath)
		}
	}
	if failed > 0 {
		return fmt.Errorf("accounts remove: %d of %d not removed", failed, len(names))
	}
	return nil
}

func (a *accountsCmd) importFile(ctx context.Context, args []string) error {
	fs := a.flags("import", "usage: xoauth2-proxy accounts import [flags] FILE|-\n\n"+
		"Adds the accounts of an import file, one per line in the old tool's format:\n"+
		"email,account_id,refresh_token,client_id[,client_secret][,ip_address]",
		"xoauth2-proxy accounts import --accounts /etc/xoauth2/accounts.json accounts.csv")
	var o importOptions
	o.register(fs, true)
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("accounts import: give one file (or - for stdin)")
	}
	in := a.stdin
	name := "stdin"
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, pos[0]
	}
	lines, err := importer.Parse(in)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(lines) == 0 {
		return fmt.Errorf("%s: no account lines (format: %s)", name, importer.Format)
	}
	store, check, path, err := a.store(o)
	if err != nil {
		return err
	}
	tty := false
	if f, ok := a.stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	progress := func(label string, total int) *importer.Progress {
		if total <= progressThreshold {
			return nil
		}
		return importer.NewProgress(a.stderr, tty, label, total)
	}
	res := importer.Import(ctx, lines, store, importer.Options{
		Provider: o.provider, Overwrite: o.overwrite, Check: check, Concurrency: o.concurrency, Progress: progress,
	})
	added := 0
	for _, r := range res {
		if r.Err == nil {
			added++
			continue
		}
		who := r.Email
		if who == "" {
			who = "-"
		}
		fmt.Fprintf(a.stdout, "%s:%d: %s: %v\n", name, r.Line, who, r.Err)
	}
	fmt.Fprintf(a.stdout, "%d of %d accounts imported, %d failed\n", added, len(res), len(res)-added)
	if added > 0 && path != "" {
		a.reloadHint(path)
	}
	if added < len(res) {
		return fmt.Errorf("accounts import: %d of %d lines failed", len(res)-added, len(res))
	}
	return nil
}

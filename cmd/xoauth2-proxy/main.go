// Command xoauth2-proxy is an SMTP relay that lets bulk-mail software that
// speaks AUTH PLAIN/LOGIN send through Gmail and Microsoft 365 mailboxes
// that accept only OAuth2. See README.md.
//
// Usage (xoauth2-proxy --help; usage.go holds the list):
//
//	xoauth2-proxy [serve] [flags]      serve (the default, like the old tool)
//	xoauth2-proxy check-config [flags] validate config.json and accounts.json; refuse the sample accounts
//	xoauth2-proxy hash-password        read a password, print a bcrypt hash for smtp_password
//	xoauth2-proxy accounts list|add|remove|import  manage accounts (files, or a running proxy with --admin-url)
//	xoauth2-proxy pmta-config [flags]  print PowerMTA virtual MTAs for the accounts
//	xoauth2-proxy token EMAIL          fetch a token for the account now; print its expiry and state
//	xoauth2-proxy send --account EMAIL --to ADDR   one test message through the account's upstream
//	xoauth2-proxy status [flags]       a running proxy's overview and the accounts needing attention
//	xoauth2-proxy demo [flags]         embedded demo against a built-in fake provider
//	xoauth2-proxy bench [flags]        measure the proxy against direct delivery (README "Benchmark")
//	xoauth2-proxy version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/bench"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/demo"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logbuf"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) { // usage.go
		if len(args) > 1 { // "help COMMAND" is "COMMAND -h"
			return run([]string{args[1], "-h"}, stdin, stdout, stderr)
		}
		printUsage(stdout)
		return 0
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	var err error
	if name == "bench-upstream" {
		// Not for people, so not in commands(): bench starts it as the
		// fake provider's process and talks to it over stdin and stdout.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err = bench.ServeUpstream(ctx, stdin, stdout)
		stop()
	} else if c, ok := lookup(name); ok {
		err = c.run(args, stdin, stdout, stderr)
	} else {
		fmt.Fprintf(stderr, "xoauth2-proxy: unknown command %q (try: %s; or --help)\n", name, commandNames())
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "xoauth2-proxy:", err)
		return 1
	}
	return 0
}

// common holds the flags the old tool had (COMPAT.md).
type common struct {
	config, accounts  string
	stateDir          string
	host              string
	port              int
	tlsPort           int
	adminHost         string
	adminPort         int
	globalConc        int
	dryRun            bool
	adminOnly         bool
	adminTokenFile    string
	metricsPerAccount bool
	logLevel          string
	logFormat         string
	shutdownTimeout   time.Duration
	explicitConfig    bool
	redisURL          string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "config.json", "global configuration file (or, as the old tool allowed, an accounts file)")
	fs.StringVar(&c.accounts, "accounts", "accounts.json", "accounts file")
	fs.StringVar(&c.stateDir, "state-dir", "", "directory for token-state.json and budgets.json (default: global.oauth2.state_dir, else the accounts file's directory)")
	fs.StringVar(&c.redisURL, "redis", "", "cluster mode: share caps and budgets with other proxies through this Redis, redis://[user@]host:port[/db] or rediss:// (overrides global.cluster's server; put the password in global.cluster.password_file, not here)")
	fs.StringVar(&c.host, "host", "127.0.0.1", "SMTP listen address")
	fs.IntVar(&c.port, "port", 2525, "SMTP listen port")
	fs.IntVar(&c.tlsPort, "tls-port", 0, "implicit TLS (SMTPS) port on --host; 0: global.smtp.tls_port, if set")
	fs.StringVar(&c.adminHost, "admin-host", "127.0.0.1", "admin API listen address (\"\" disables the admin API)")
	fs.IntVar(&c.adminPort, "admin-port", 9090, "admin API port (0: any free port)")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", "", adminTokenFileHelp)
	fs.BoolVar(&c.metricsPerAccount, "metrics-per-account", false, "add per-account metric series (one per account: mind your Prometheus)")
	fs.IntVar(&c.globalConc, "global-concurrency", 0, "maximum client connections (overrides global_concurrency_limit)")
	fs.BoolVar(&c.dryRun, "dry-run", false, "accept and discard messages; never contact a provider")
	fs.BoolVar(&c.adminOnly, "admin-only", false, "run only the admin API, without the SMTP listener")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long transactions in flight may take to finish before their connections are closed")
}

func (c *common) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			c.explicitConfig = true
		}
	})
	return nil
}

func (c *common) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", c.logFormat)
}

// adminTokenFileHelp is the usage of --admin-token-file.
const adminTokenFileHelp = "file holding the admin API bearer token (or set XOAUTH2_PROXY_ADMIN_TOKEN); no flag takes " +
	"the token itself, which the process list and shell history would show"

// adminToken reads the admin bearer token from --admin-token-file or
// XOAUTH2_PROXY_ADMIN_TOKEN; none leaves the /admin routes refused.
func (c *common) adminToken() (secret.String, error) {
	if c.adminTokenFile != "" {
		b, err := os.ReadFile(c.adminTokenFile)
		if err != nil {
			return secret.String{}, fmt.Errorf("--admin-token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return secret.String{}, fmt.Errorf("--admin-token-file %s is empty", c.adminTokenFile)
		}
		return secret.New(tok), nil
	}
	return secret.New(strings.TrimSpace(os.Getenv("XOAUTH2_PROXY_ADMIN_TOKEN"))), nil
}

// readableByOthers says how a secret file is exposed ("readable by its
// group (mode 0640)"), or "" when only its owner can read it, the path is
// "" or the mode bits do not describe access (Windows).
func readableByOthers(path string) string {
	if path == "" || runtime.GOOS == "windows" {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o044 == 0 {
		return ""
	}
	who := "its group"
	if fi.Mode().Perm()&0o004 != 0 {
		who = "every user"
	}
	return fmt.Sprintf("readable by %s (mode %04o)", who, fi.Mode().Perm())
}

func (c *common) loadOptions() config.LoadOptions {
	return config.LoadOptions{ConfigPath: c.config, AccountsPath: c.accounts, ConfigExplicit: c.explicitConfig, StateDir: c.stateDir, RedisURL: c.redisURL}
}

func serve(args []string, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	setUsage(fs, "usage: xoauth2-proxy [serve] [flags]\n\n"+
		"Relays mail: clients log in with AUTH PLAIN/LOGIN as one of the accounts, and each message goes\n"+
		"to Gmail or Microsoft 365 over that account's OAuth2 session. Runs until SIGTERM; SIGHUP reloads.", serveExample)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if c.shutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout: must be positive, got %v", c.shutdownTimeout)
	}
	// One write per 100 ms instead of one per message line (logbuf).
	logs := logbuf.New(stderr, 100*time.Millisecond)
	defer logs.Close()
	log, err := c.logger(logs)
	if err != nil {
		return err
	}
	adminToken, err := c.adminToken()
	if err != nil {
		return err
	}
	if w := readableByOthers(c.adminTokenFile); w != "" {
		log.Warn("--admin-token-file "+w+"; chmod 600 it", "file", c.adminTokenFile)
	}
	adminListen := ""
	if c.adminHost != "" {
		adminListen = net.JoinHostPort(c.adminHost, strconv.Itoa(c.adminPort))
	}
	svc, err := service.New(service.Options{
		Load:              c.loadOptions(),
		Listen:            net.JoinHostPort(c.host, strconv.Itoa(c.port)),
		TLSPort:           c.tlsPort,
		GlobalConcurrency: c.globalConc,
		DryRun:            c.dryRun,
		ShutdownTimeout:   c.shutdownTimeout,
		Logger:            log,
		Admin: service.AdminOptions{
			Listen: adminListen, Token: adminToken, Only: c.adminOnly,
			MetricsPerAccount: c.metricsPerAccount, Version: version,
		},
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: reloading configuration")
				_ = svc.Reload()    // logs its outcome; a failure keeps the running config
				_ = svc.ReloadTLS() // the listener certificate, without dropping connections
			case <-ctx.Done():
				return
			}
		}
	}()
	served := make(chan struct{})
	defer close(served)
	go func() { // owned by serve: ends when it returns
		// A second signal exits at once.
		select {
		case <-ctx.Done():
		case <-served:
			return
		}
		stop()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		defer signal.Stop(ch)
		select {
		case <-ch:
			log.Warn("second signal: exiting now")
			_ = logs.Flush()
			os.Exit(1)
		case <-served:
		}
	}()
	return svc.Run(ctx)
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demo.Options
	var verbose bool
	fs.IntVar(&o.Accounts, "accounts", 20, "accounts to generate")
	fs.IntVar(&o.Messages, "messages", 2000, "messages to send through the proxy (-1 for none)")
	fs.IntVar(&o.Connections, "connections", 10, "client connections")
	fs.IntVar(&o.Port, "port", 0, "proxy SMTP port (0: any free port)")
	fs.StringVar(&o.Dir, "dir", "", "directory for the generated files (default: a temporary one)")
	fs.BoolVar(&o.KeepRunning, "keep-running", false, "keep the proxy and fake provider running after the batch")
	fs.BoolVar(&verbose, "v", false, "log every message and session")
	setUsage(fs, "usage: xoauth2-proxy demo [flags]\n\n"+
		"Runs the proxy in front of a built-in fake provider on loopback, sends a batch of test mail\n"+
		"through it and prints what happened. Nothing leaves the machine.", "xoauth2-proxy demo -accounts 5 -keep-running")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Out = stdout
	if verbose {
		o.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return demo.Run(ctx, o)
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	var mode string
	var pipelining, asJSON bool
	fs.IntVar(&o.Accounts, "accounts", bench.DefaultAccounts, "accounts to generate")
	fs.IntVar(&o.Connections, "connections", bench.DefaultConnections, "load-client connections")
	fs.IntVar(&o.MessageBytes, "size", bench.DefaultMessageBytes, "message size in bytes")
	fs.IntVar(&o.Rcpts, "rcpts", 1, "recipients per message")
	fs.DurationVar(&o.Duration, "duration", bench.DefaultDuration, "how long each mode sends (0: until --messages)")
	fs.IntVar(&o.Messages, "messages", 0, "at most this many messages per mode (0: no cap)")
	fs.BoolVar(&o.TLS, "tls", false, "upstream STARTTLS")
	fs.IntVar(&o.Cap, "cap", 0, "max_connections_per_account (0: the provider default, 10 for gmail)")
	fs.DurationVar(&o.Latency, "latency", 0, "one-way delay injected on the link to the provider, e.g. 20ms")
	fs.BoolVar(&pipelining, "pipelining", true, "the load client pipelines MAIL/RCPT/DATA")
	fs.BoolVar(&o.Chunking, "chunking", false, "the fake provider offers CHUNKING (BDAT), as Gmail and Exchange Online do")
	fs.StringVar(&mode, "mode", string(bench.ModeBoth), "proxy, direct or both")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&o.NoBudgets, "no-budgets", false, "switch the accounts' sending budgets off (to measure their cost)")
	fs.BoolVar(&o.NoRelay, "no-relay", false, "without --latency: no relay hop to the provider (round trips are then not counted)")
	fs.BoolVar(&o.ProviderInProcess, "provider-in-process", false, "run the fake provider and relay in the bench process with the load client, not in a process of their own")
	fs.StringVar(&o.ProxyLogLevel, "proxy-log-level", "info", "the proxy's --log-level (its log goes to a temporary file)")
	fs.IntVar(&o.Cluster, "cluster", 0, "cluster mode: one proxy on file state, one on Redis and this many on one Redis, side by side (needs redis-server)")
	setUsage(fs, "usage: xoauth2-proxy bench [flags]\n\n"+
		"Measures messages per minute, latency and CPU through the proxy against direct delivery, both\n"+
		"to a fake provider on loopback (README \"Benchmark\").", "xoauth2-proxy bench --duration 10s --tls")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	o.Mode, o.NoPipelining, o.Progress = bench.Mode(mode), !pipelining, stderr
	if o.Duration == 0 && o.Messages == 0 {
		return errors.New("bench: --duration 0 needs --messages")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if o.Cluster > 0 {
		rep, err := bench.RunCluster(ctx, o) // internal/bench/cluster.go
		if err != nil {
			return err
		}
		if asJSON {
			return rep.WriteJSON(stdout)
		}
		return rep.WriteText(stdout)
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if asJSON {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}

func checkConfig(args []string, stdout, stderr io.Writer) error {
	var c common
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	setUsage(fs, "usage: xoauth2-proxy check-config [--config FILE] [--accounts FILE]\n\n"+
		"Reads the files as serve would and lists every problem, by file, account and field; exits 1 on\n"+
		"any, and on the sample accounts file the packages install. Contacts no provider.", checkExample)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	snap, warns, err := config.Load(c.loadOptions())
	for _, w := range warns {
		fmt.Fprintln(stdout, "warning:", w.String())
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, snap.Summary())
	switch sample, err := holdsSample(snap.AccountsPath); {
	case err != nil:
		return err
	case sample:
		return sampleError(snap.AccountsPath) // sample.go
	}
	fmt.Fprintln(stdout, "configuration OK")
	return nil
}

func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "usage: xoauth2-proxy hash-password < password.txt\n\n"+
		"Prints a bcrypt hash for smtp_password. The password comes from a prompt that does not echo\n"+
		"on a terminal, else from the first line of stdin; never from the command line, where every\n"+
		"local user can read it in the process list and it stays in the shell's history.",
		"xoauth2-proxy hash-password          # type the password at the prompt; put the hash in smtp_password")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// The argument is probably the password: do not repeat it.
		return errors.New("hash-password takes no arguments: type the password at its prompt or give it on stdin, " +
			"never on the command line (the process list and your shell history show it; remove it from there)")
	}
	pass, err := readSecret(stdin, stderr, "password")
	if err != nil {
		return err
	}
	h, err := account.HashPassword(pass)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}

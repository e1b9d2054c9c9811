package bench

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Mode selects what Run measures.
type Mode string

// The modes.
const (
	ModeProxy  Mode = "proxy"  // load client → proxy → fake provider
	ModeDirect Mode = "direct" // load client → fake provider, AUTH XOAUTH2
	ModeBoth   Mode = "both"   // proxy, then direct, in one run
)

// Runner says how the proxy under test runs.
type Runner int

// The runners.
const (
	// Subprocess runs the proxy as a child process, "Executable serve"
	// with generated config and accounts files, so that the CPU time and
	// peak RSS read from /proc are the proxy's alone. The CLI uses it.
	Subprocess Runner = iota
	// InProcess runs the proxy inside this process (service.New on the
	// same generated files). It needs no binary, which is what go test
	// wants, but the proxy's CPU and memory cannot be told apart from the
	// load client's and fake provider's, so they are not reported.
	InProcess
)

// Defaults for zero Options fields.
const (
	DefaultAccounts     = 100
	DefaultConnections  = 50
	DefaultMessageBytes = 2048
	DefaultDuration     = 10 * time.Second
	// gmailDefaultCap is config's built-in gmail
	// max_connections_per_account, which the generated accounts use.
	gmailDefaultCap = 10
)

// Options configure a run. The zero value is the target 1: 100
// accounts, 50 client connections, 2 KB messages to one recipient, 10 s,
// plain upstream, no injected latency, both modes.
type Options struct {
	// Accounts is the number of generated accounts; 0 means 100. Client
	// connection i authenticates as account i mod Accounts, so with
	// fewer connections than accounts only the first Connections accounts
	// send.
	Accounts int
	// Connections is the number of load-client connections; 0 means 50.
	Connections int
	// MessageBytes is the size of each message's content; 0 means 2048.
	MessageBytes int
	// Rcpts is the number of recipients per message; 0 means 1.
	Rcpts int
	// Duration is how long each mode sends; 0 means 10s unless Messages
	// is set, in which case there is no time limit.
	Duration time.Duration
	// Messages caps the messages each mode sends; 0 means no cap.
	Messages int
	// TLS makes the fake provider require STARTTLS before AUTH, and the
	// proxy (and the direct client) use it.
	TLS bool
	// Cap is the proxy's max_connections_per_account; 0 keeps the gmail
	// provider default (10).
	Cap int
	// Latency is the one-way delay injected on the proxy↔provider link,
	// and on the client↔provider link in the direct mode. 0 means none.
	Latency time.Duration
	// NoPipelining makes the load client send one command at a time.
	NoPipelining bool
	// Chunking makes the fake provider offer CHUNKING (BDAT), as Gmail
	// and Exchange Online do: the proxy then answers DATA itself and
	// sends the body in one round trip; the direct client keeps DATA.
	Chunking bool
	// Mode is what to measure; "" means both.
	Mode Mode
	// NoBudgets switches the accounts' sending budgets off (rate_limiting
	// "enabled": false), to measure what their bookkeeping costs.
	NoBudgets bool
	// NoRelay connects straight to the fake provider instead of through
	// the latency relay, in both modes. Only with Latency 0; upstream
	// round trips are then not counted.
	NoRelay bool
	// Runner is how the proxy runs; the zero value is Subprocess, which
	// also runs the fake provider and the relay in a process of their own
	// ("Executable bench-upstream"), unless ProviderInProcess.
	Runner Runner
	// ProviderInProcess keeps the fake provider and the relay in the bench
	// process with the load client, as they always are with InProcess.
	ProviderInProcess bool
	// Executable is the xoauth2-proxy binary for Subprocess; "" means
	// this process's own executable (os.Executable).
	Executable string
	// ProxyLogLevel is the proxy's --log-level; "" means info, what an
	// operator runs (one line per message, written to a file in the
	// temporary directory).
	ProxyLogLevel string
	// Progress, when set, receives a line per step as the run goes.
	Progress io.Writer
	// Cluster is the number of proxies sharing one Redis in RunCluster
	// (bench --cluster N, cluster.go); Run ignores it.
	Cluster int
}

func (o *Options) setDefaults() {
	if o.Accounts <= 0 {
		o.Accounts = DefaultAccounts
	}
	if o.Connections <= 0 {
		o.Connections = DefaultConnections
	}
	if o.MessageBytes <= 0 {
		o.MessageBytes = DefaultMessageBytes
	}
	if o.Rcpts <= 0 {
		o.Rcpts = 1
	}
	if o.Duration <= 0 && o.Messages <= 0 {
		o.Duration = DefaultDuration
	}
	if o.Mode == "" {
		o.Mode = ModeBoth
	}
	if o.ProxyLogLevel == "" {
		o.ProxyLogLevel = "info"
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

func (o *Options) validate() error {
	var errs []error
	switch o.Mode {
	case ModeProxy, ModeDirect, ModeBoth:
	default:
		errs = append(errs, fmt.Errorf("mode: want proxy, direct or both, not %q", o.Mode))
	}
	if o.Latency < 0 {
		errs = append(errs, errors.New("latency: must not be negative"))
	}
	if o.NoRelay && o.Latency > 0 {
		errs = append(errs, errors.New("no-relay: only without injected latency"))
	}
	if o.Rcpts > 100 {
		errs = append(errs, errors.New("rcpts: the fake provider takes at most 100 recipients, like Gmail"))
	}
	if o.Cap < 0 || o.Messages < 0 {
		errs = append(errs, errors.New("cap and messages must not be negative"))
	}
	return errors.Join(errs...)
}

// cap is the per-account session cap the proxy runs with.
func (o *Options) cap() int {
	if o.Cap > 0 {
		return o.Cap
	}
	return gmailDefaultCap
}

func (o *Options) runs(m Mode) bool { return o.Mode == ModeBoth || o.Mode == m }

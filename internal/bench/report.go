package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Result is one mode's measurement. The time.Duration fields are for Go
// callers; JSON carries the same values in the unit its key names.
type Result struct {
	Mode           string        `json:"mode"`
	Elapsed        time.Duration `json:"-"`
	ElapsedSeconds float64       `json:"elapsed_seconds"`
	// Delivered is what the fake provider stored during the load window.
	Delivered          int64   `json:"delivered"`
	DeliveredPerMinute float64 `json:"delivered_per_minute"`
	// Accepted, Refused and Errors are what the load client saw: final
	// 250, any other reply, a broken connection.
	Accepted     int64         `json:"accepted"`
	Refused      int64         `json:"refused"`
	Errors       int64         `json:"errors"`
	LatencyP50   time.Duration `json:"-"`
	LatencyP99   time.Duration `json:"-"`
	LatencyP50MS float64       `json:"latency_p50_ms"`
	LatencyP99MS float64       `json:"latency_p99_ms"`
	// SessionsOpened, Logins and LoginFailures are the fake provider's
	// connections, successful and failed AUTHs over the whole mode.
	SessionsOpened int64 `json:"upstream_sessions_opened"`
	Logins         int64 `json:"upstream_logins"`
	LoginFailures  int64 `json:"upstream_login_failures"`
	// PeakSessionsPerAccount is the most authenticated sessions one
	// mailbox had at once.
	PeakSessionsPerAccount int64 `json:"peak_sessions_per_account"`
	// RoundTrips are the provider's reply bursts during the window (see
	// RelayStats.RoundTrips); not counted with Options.NoRelay.
	RoundTrips           int64    `json:"upstream_round_trips,omitempty"`
	RoundTripsPerMessage *float64 `json:"upstream_round_trips_per_message,omitempty"`
	// ProxyCPU is the proxy process's CPU time during the window; only
	// measured with the Subprocess runner.
	ProxyCPU             time.Duration `json:"-"`
	ProxyCPUSeconds      *float64      `json:"proxy_cpu_seconds,omitempty"`
	ProxyCPUPerMessageMS *float64      `json:"proxy_cpu_per_message_ms,omitempty"`
	// CPU is how the machine's CPUs were used during the window; nil
	// when /proc is not available.
	CPU *CPUCores `json:"cpu_cores,omitempty"`
	// BenchCPUPerMessageMS is the bench process's CPU time (the load
	// client, and the fake provider and relay when they run in it) per
	// delivered message.
	BenchCPUPerMessageMS *float64 `json:"bench_cpu_per_message_ms,omitempty"`
	// ProviderCPU is the fake provider process's (provider and relay) CPU
	// time during the window; only when it runs in a process of its own.
	ProviderCPU             time.Duration `json:"-"`
	ProviderCPUPerMessageMS *float64      `json:"provider_cpu_per_message_ms,omitempty"`
	// ProxyPeakRSSBytes is the proxy process's VmHWM; 0 when not measured.
	ProxyPeakRSSBytes int64  `json:"proxy_peak_rss_bytes,omitempty"`
	FirstRefusal      string `json:"first_refusal,omitempty"`
	FirstError        string `json:"first_error,omitempty"`

	roundTripsCounted, proxyCPUMeasured, providerCPUMeasured bool
}

// CPUCores is CPU time per second of the window, by whom: 1.0 is one
// core busy all the time.
type CPUCores struct {
	Bench    float64 `json:"bench"`    // this process: load client (and an in-process provider, relay or proxy)
	Provider float64 `json:"provider"` // the fake provider's process: provider and relay
	Proxy    float64 `json:"proxy"`    // the proxy process
	Other    float64 `json:"other"`    // every other process on the machine
}

// busyOther is the CPU, in cores, that other processes may use during a
// window before the report warns that the numbers are depressed.
const busyOther = 0.2

// derive fills the per-unit fields from the raw ones.
func (r *Result) derive() {
	r.ElapsedSeconds = r.Elapsed.Seconds()
	if r.ElapsedSeconds > 0 {
		r.DeliveredPerMinute = float64(r.Delivered) / r.ElapsedSeconds * 60
	}
	r.LatencyP50MS = ms(r.LatencyP50)
	r.LatencyP99MS = ms(r.LatencyP99)
	if r.roundTripsCounted && r.Delivered > 0 {
		v := float64(r.RoundTrips) / float64(r.Delivered)
		r.RoundTripsPerMessage = &v
	}
	if r.CPU != nil && r.Delivered > 0 {
		v := r.CPU.Bench * r.ElapsedSeconds * 1000 / float64(r.Delivered)
		r.BenchCPUPerMessageMS = &v
	}
	if r.providerCPUMeasured && r.Delivered > 0 {
		v := ms(r.ProviderCPU) / float64(r.Delivered)
		r.ProviderCPUPerMessageMS = &v
	}
	if r.proxyCPUMeasured {
		s := r.ProxyCPU.Seconds()
		r.ProxyCPUSeconds = &s
		if r.Delivered > 0 {
			v := ms(r.ProxyCPU) / float64(r.Delivered)
			r.ProxyCPUPerMessageMS = &v
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Settings echo the options a report was made with.
type Settings struct {
	Accounts        int     `json:"accounts"`
	Connections     int     `json:"connections"`
	MessageBytes    int     `json:"message_bytes"`
	Rcpts           int     `json:"rcpts"`
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	Messages        int     `json:"messages,omitempty"`
	TLS             bool    `json:"upstream_tls"`
	Cap             int     `json:"cap"`
	CapIsDefault    bool    `json:"cap_is_provider_default"`
	LatencyMS       float64 `json:"latency_one_way_ms"`
	Pipelining      bool    `json:"client_pipelining"`
	Chunking        bool    `json:"upstream_chunking"`
	Mode            string  `json:"mode"`
	Relay           bool    `json:"relay"`
	Runner          string  `json:"proxy_runner"`
	ProviderProcess bool    `json:"provider_own_process"`
	ProxyLogLevel   string  `json:"proxy_log_level"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	// LoadAverage is the one-minute load average when the run started;
	// -1 when unknown.
	LoadAverage float64 `json:"load_average_1m"`
}

// Report is the outcome of Run.
type Report struct {
	Settings Settings `json:"settings"`
	Machine  Machine  `json:"machine"`
	Proxy    *Result  `json:"proxy,omitempty"`
	Direct   *Result  `json:"direct,omitempty"`
	// Ratio is the proxy's delivered rate over the direct one, when both ran.
	Ratio *float64 `json:"ratio_proxy_to_direct,omitempty"`
	// CapHeld: no mailbox had more sessions at once than the proxy's cap.
	CapHeld *bool `json:"cap_held,omitempty"`
	// LoginsWithinSessions: the proxy logged in at most once per session.
	LoginsWithinSessions *bool    `json:"logins_within_sessions,omitempty"`
	Method               []string `json:"method"`
	Warnings             []string `json:"warnings,omitempty"`
}

func newReport(o *Options) *Report {
	runner := "subprocess"
	if o.Runner == InProcess {
		runner = "in-process"
	}
	return &Report{
		Settings: Settings{
			Accounts: o.Accounts, Connections: o.Connections, MessageBytes: o.MessageBytes,
			Rcpts: o.Rcpts, DurationSeconds: o.Duration.Seconds(), Messages: o.Messages,
			TLS: o.TLS, Cap: o.cap(), CapIsDefault: o.Cap == 0, LatencyMS: ms(o.Latency),
			Pipelining: !o.NoPipelining, Chunking: o.Chunking, Mode: string(o.Mode), Relay: !o.NoRelay,
			Runner: runner, ProxyLogLevel: o.ProxyLogLevel,
			ProviderProcess: o.Runner == Subprocess && !o.ProviderInProcess,
		},
		Machine: Machine{
			CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
			GoVersion: runtime.Version(), LoadAverage: loadAverage(),
		},
	}
}

// loadAverage reads the one-minute load average; -1 when unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// finish computes the comparisons, the checks, the method notes and the
// warnings.
func (r *Report) finish() {
	s := &r.Settings
	if r.Proxy != nil && r.Direct != nil && r.Direct.DeliveredPerMinute > 0 {
		v := r.Proxy.DeliveredPerMinute / r.Direct.DeliveredPerMinute
		r.Ratio = &v
	}
	if p := r.Proxy; p != nil {
		capHeld := p.PeakSessionsPerAccount <= int64(s.Cap)
		logins := p.Logins <= p.SessionsOpened
		r.CapHeld, r.LoginsWithinSessions = &capHeld, &logins
		if !capHeld {
			r.warn("a mailbox had %d upstream sessions at once, above the cap of %d", p.PeakSessionsPerAccount, s.Cap)
		}
		if !logins {
			r.warn("the proxy logged in %d times over %d upstream sessions", p.Logins, p.SessionsOpened)
		}
	}
	for _, m := range []*Result{r.Proxy, r.Direct} {
		if m == nil {
			continue
		}
		if m.Delivered != m.Accepted {
			r.warn("%s: the client saw %d messages accepted but the provider stored %d", m.Mode, m.Accepted, m.Delivered)
		}
		if m.Refused > 0 {
			r.warn("%s: %d messages refused; first: %s", m.Mode, m.Refused, m.FirstRefusal)
		}
		if m.Errors > 0 {
			r.warn("%s: %d connection errors; first: %s", m.Mode, m.Errors, m.FirstError)
		}
		if m.CPU != nil && m.CPU.Other > busyOther {
			r.warn("%s: other processes on this machine used %.2f cores during the window: rates are lower and noisier than on a quiet machine", m.Mode, m.CPU.Other)
		}
	}
	if s.Runner == "in-process" && r.Proxy != nil {
		r.warn("the proxy ran in-process: its CPU time and RSS are not measured")
	}
	r.Method = r.method()
}

func (r *Report) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

func (r *Report) method() []string {
	s := r.Settings
	where := "the load client, the fake provider and the relay run in the bench process"
	if s.ProviderProcess {
		where = "the fake provider and the relay run in a process of their own (xoauth2-proxy bench-upstream), " +
			"the load client in the bench process, as client, proxy and provider are separate programs in real life " +
			"(with --provider-in-process they share the bench process, which spares the direct mode the wake-ups " +
			"that every hop between processes costs)"
	}
	m := []string{
		"the proxy runs as its own process (xoauth2-proxy serve on generated config and accounts files, " +
			"log level " + s.ProxyLogLevel + " to a file; sending budgets on, without limits); " + where +
			"; all on the same CPUs. Each mode gets a fresh fake provider that verifies XOAUTH2 and discards bodies.",
		"delivered/min: messages the fake provider stored during the load window (it stores each before replying 250), " +
			"divided by the window, from the first MAIL to the last final reply.",
		"latency: per accepted message at the load client, from writing MAIL to reading the reply after the body; " +
			"p50 and p99 by nearest rank.",
		"direct: the same client connections, messages and limits, straight to the fake provider; each connection " +
			"fetched an access token from the fake token endpoint and logged in once with AUTH XOAUTH2 before the window.",
	}
	if s.Relay {
		m = append(m, "round trips: counted at a TCP relay in front of the fake provider (both modes): each time the "+
			"provider sends after having received bytes since it last sent is one burst of replies its client waited for. "+
			"Divided by messages delivered. Session setup inside the window (EHLO, STARTTLS and the TLS handshake, AUTH) is included.")
	}
	if s.LatencyMS > 0 {
		m = append(m, fmt.Sprintf("latency injection: the relay delays every chunk by %.0f ms one way, in both directions, "+
			"without serialising chunks. Proxy mode: on the proxy↔provider link (client↔proxy is not delayed). Direct mode: "+
			"on the client↔provider link, so both pay the same delay per upstream round trip.", s.LatencyMS))
	}
	if s.Runner == "subprocess" {
		m = append(m, "proxy CPU: utime+stime of the proxy process (/proc/PID/stat, 10 ms ticks) over the window, "+
			"divided by messages delivered; it includes opening upstream sessions in the window. "+
			"Peak RSS: the process's VmHWM (/proc/PID/status) at the end of the load.")
	}
	m = append(m, "CPU cores: CPU seconds per second of the window used by the bench process, by the fake provider's process, "+
		"by the proxy process, and by every other process (from /proc/stat): the machine has "+
		strconv.Itoa(r.Machine.CPUs)+"; with 'other' near 0 the numbers are the machine's own.")
	return m
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report as a side-by-side table with the method
// and warnings below it.
func (r *Report) WriteText(w io.Writer) error {
	s := r.Settings
	var b strings.Builder
	pipe := "pipelining"
	if !s.Pipelining {
		pipe = "no pipelining"
	}
	limit := fmt.Sprintf("%gs per mode", s.DurationSeconds)
	if s.Messages > 0 {
		limit = fmt.Sprintf("at most %d messages per mode", s.Messages)
		if s.DurationSeconds > 0 {
			limit += fmt.Sprintf(" or %gs", s.DurationSeconds)
		}
	}
	fmt.Fprintf(&b, "xoauth2-proxy bench\n")
	fmt.Fprintf(&b, "  %d accounts, %d client connections (%s), %d-byte messages, %d recipient(s), %s\n",
		s.Accounts, s.Connections, pipe, s.MessageBytes, s.Rcpts, limit)
	tlsMode, capNote, lat := "plain", "", "none"
	if s.TLS {
		tlsMode = "STARTTLS"
	}
	if s.Chunking {
		tlsMode += ", CHUNKING offered"
	}
	if s.CapIsDefault {
		capNote = " (gmail default)"
	}
	if s.LatencyMS > 0 {
		lat = fmt.Sprintf("%g ms one way", s.LatencyMS)
	}
	fmt.Fprintf(&b, "  upstream %s, session cap %d per account%s, injected latency %s\n", tlsMode, s.Cap, capNote, lat)
	provider := "in the bench process"
	if s.ProviderProcess {
		provider = "its own process"
	}
	fmt.Fprintf(&b, "  machine: %d CPUs, %s, load average %.2f at start; proxy %s, fake provider %s\n\n",
		r.Machine.CPUs, r.Machine.GoVersion, r.Machine.LoadAverage, s.Runner, provider)

	col := func(res *Result, f func(*Result) string) string {
		if res == nil {
			return "-"
		}
		return f(res)
	}
	row := func(name string, f func(*Result) string, ratio string) {
		fmt.Fprintf(&b, "  %-30s%20s%20s%14s\n", name, col(r.Proxy, f), col(r.Direct, f), ratio)
	}
	ratio := ""
	if r.Ratio != nil {
		ratio = fmt.Sprintf("%.1f%%", *r.Ratio*100)
	}
	fmt.Fprintf(&b, "  %-30s%20s%20s%14s\n", "", "proxy", "direct", "proxy/direct")
	row("delivered per minute", func(m *Result) string { return group(int64(m.DeliveredPerMinute + 0.5)) }, ratio)
	row("delivered (window)", func(m *Result) string { return fmt.Sprintf("%s in %.1fs", group(m.Delivered), m.ElapsedSeconds) }, "")
	row("client latency p50", func(m *Result) string { return fmt.Sprintf("%.2f ms", m.LatencyP50MS) }, "")
	row("client latency p99", func(m *Result) string { return fmt.Sprintf("%.2f ms", m.LatencyP99MS) }, "")
	row("refused / errors", func(m *Result) string { return fmt.Sprintf("%d / %d", m.Refused, m.Errors) }, "")
	row("upstream sessions opened", func(m *Result) string { return group(m.SessionsOpened) }, "")
	row("upstream logins", func(m *Result) string { return group(m.Logins) }, "")
	row("peak sessions per account", func(m *Result) string { return strconv.FormatInt(m.PeakSessionsPerAccount, 10) }, "")
	row("upstream round trips / msg", func(m *Result) string {
		if m.RoundTripsPerMessage == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f", *m.RoundTripsPerMessage)
	}, "")
	row("proxy CPU per message", func(m *Result) string {
		if m.ProxyCPUPerMessageMS == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f ms", *m.ProxyCPUPerMessageMS)
	}, "")
	row("bench CPU per message", func(m *Result) string {
		if m.BenchCPUPerMessageMS == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f ms", *m.BenchCPUPerMessageMS)
	}, "")
	row("provider CPU per message", func(m *Result) string {
		if m.ProviderCPUPerMessageMS == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f ms", *m.ProviderCPUPerMessageMS)
	}, "")
	row("proxy CPU in window", func(m *Result) string {
		if m.ProxyCPUSeconds == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f s", *m.ProxyCPUSeconds)
	}, "")
	row("cores: bench/prov/proxy/other", func(m *Result) string {
		if m.CPU == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f/%.2f/%.2f/%.2f", m.CPU.Bench, m.CPU.Provider, m.CPU.Proxy, m.CPU.Other)
	}, "")
	row("proxy peak RSS", func(m *Result) string {
		if m.ProxyPeakRSSBytes == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f MB", float64(m.ProxyPeakRSSBytes)/(1<<20))
	}, "")
	if r.CapHeld != nil {
		fmt.Fprintf(&b, "\n  checks: upstream logins ≤ sessions opened: %s; sessions per account ≤ cap %d: %s\n",
			yesNo(*r.LoginsWithinSessions), s.Cap, yesNo(*r.CapHeld))
	}
	b.WriteString("\nmethod:\n")
	for _, m := range r.Method {
		fmt.Fprintf(&b, "  - %s\n", m)
	}
	if len(r.Warnings) > 0 {
		b.WriteString("\nwarnings:\n")
		for _, m := range r.Warnings {
			fmt.Fprintf(&b, "  ! %s\n", m)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// group writes n with thousands separators: 1234567 → "1,234,567".
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

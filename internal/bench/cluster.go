package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
)

// ClusterRow is one configuration of a cluster run (Options.Cluster).
type ClusterRow struct {
	Label        string  `json:"label"`
	Proxies      int     `json:"proxies"`
	Redis        bool    `json:"redis"`
	Delivered    int64   `json:"delivered"`
	Accepted     int64   `json:"accepted"`
	Refused      int64   `json:"refused"`
	Errors       int64   `json:"errors"`
	PerSecond    float64 `json:"messages_per_second"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
	// ProxyCPUPerMessageMS is the CPU time of all the proxies over the
	// messages delivered.
	ProxyCPUPerMessageMS float64 `json:"proxy_cpu_per_message_ms"`
	// RedisCommandsPerMessage counts the scripts Redis ran (INFO
	// commandstats: EVALSHA and EVAL) over the messages delivered: an
	// upper bound of the round trips, as the client pipelines concurrent
	// calls into one write.
	RedisCommandsPerMessage  float64 `json:"redis_commands_per_message"`
	UpstreamRoundTripsPerMsg float64 `json:"upstream_round_trips_per_message,omitempty"`
	PeakSessionsPerAccount   int64   `json:"peak_sessions_per_account"`
}

// ClusterReport is a cluster run: one proxy on file state, one on Redis,
// and Options.Cluster proxies on one Redis, the same load for each.
type ClusterReport struct {
	Accounts    int          `json:"accounts"`
	Connections int          `json:"connections"`
	Duration    float64      `json:"duration_seconds"`
	Rows        []ClusterRow `json:"rows"`
}

// RunCluster measures cluster mode (xoauth2-proxy bench --cluster N): the
// proxies run as processes (Subprocess), a private redis-server (which
// must be installed) on loopback, the fake provider in a process of its
// own unless ProviderInProcess. Each configuration gets the whole load,
// spread evenly over its proxies; Redis is flushed between them.
func RunCluster(ctx context.Context, o Options) (*ClusterReport, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Cluster < 1 {
		return nil, fmt.Errorf("cluster: want at least 1 proxy, not %d", o.Cluster)
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the proxy executable: %w", err)
		}
		o.Executable = exe
	}
	dir, err := os.MkdirTemp("", "xoauth2-proxy-bench-cluster-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rs, err := startRedis(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer rs.stop()
	e := &env{o: &o, dir: dir, accts: makeAccounts(o.Accounts), body: makeBody(o.MessageBytes), rcpts: makeRcpts(o.Rcpts)}
	u, err := e.startUpstream(ctx)
	if err != nil {
		return nil, err
	}
	defer closeUpstream(u, &err)
	rep := &ClusterReport{Accounts: o.Accounts, Connections: o.Connections, Duration: o.Duration.Seconds()}
	for _, c := range []struct {
		label string
		n     int
		redis bool
	}{
		{"1 proxy, file state", 1, false},
		{"1 proxy, redis", 1, true},
		{fmt.Sprintf("%d proxies, redis", o.Cluster), o.Cluster, true},
	} {
		if c.redis && c.n == 1 && o.Cluster == 1 && len(rep.Rows) == 2 {
			break
		}
		row, err := e.clusterRow(ctx, u, rs, c.label, c.n, c.redis)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.label, err)
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

func (e *env) clusterRow(ctx context.Context, u upstream, rs *redisServer, label string, n int, redis bool) (row ClusterRow, err error) {
	row = ClusterRow{Label: label, Proxies: n, Redis: redis}
	if err := rs.do(ctx, "FLUSHALL"); err != nil {
		return row, err
	}
	sub := filepath.Join(e.dir, strings.NewReplacer(" ", "-", ",", "").Replace(label))
	if err := os.Mkdir(sub, 0o700); err != nil {
		return row, err
	}
	_, caFile := u.TLS()
	cfg, accts, err := writeProxyFiles(sub, e.o, e.accts, u.Addr(), u.TokenURL(), caFile)
	if err != nil {
		return row, err
	}
	if redis {
		if err := addCluster(cfg, rs.addr); err != nil {
			return row, err
		}
	}
	var proxies []*subprocess
	defer func() {
		for _, p := range proxies {
			if serr := p.Stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	var fleets []*loadgen.Fleet
	defer func() {
		for _, f := range fleets {
			f.Close()
		}
	}()
	for i := range n {
		pdir := filepath.Join(sub, fmt.Sprint("proxy", i))
		if err := os.Mkdir(pdir, 0o700); err != nil {
			return row, err
		}
		p, err := startSubprocess(ctx, e.o.Executable, proxyFiles{dir: pdir, config: cfg, accounts: accts,
			conns: globalConcurrency(e.o), logLevel: e.o.ProxyLogLevel})
		if err != nil {
			return row, err
		}
		proxies = append(proxies, p)
		conns := e.o.Connections / n
		if i < e.o.Connections%n {
			conns++
		}
		f, err := loadgen.Open(ctx, loadgen.FleetOptions{
			Addr: p.Addr(), Connections: max(conns, 1), Timeout: clientTimeout, NoPipelining: e.o.NoPipelining,
			Login: func(c *loadgen.Client, j int) (string, error) {
				a := e.accts[(j*n+i)%len(e.accts)]
				return a.Email, c.Auth(a.Email, clientPassword)
			},
		})
		if err != nil {
			return row, err
		}
		fleets = append(fleets, f)
	}
	e.progress("%s: %d proxies listening, sending for %v", label, n, e.o.Duration)
	before, err := u.Counters(ctx)
	if err != nil {
		return row, err
	}
	cmds0, err := rs.commands(ctx)
	if err != nil {
		return row, err
	}
	cpu0 := make([]time.Duration, n)
	for i, p := range proxies {
		cpu0[i], _ = p.CPU()
	}
	sums := make([]loadgen.Summary, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, f := range fleets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i], errs[i] = f.Run(ctx, e.load())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return row, err
		}
	}
	var cpu time.Duration
	for i, p := range proxies {
		c, _ := p.CPU()
		cpu += c - cpu0[i]
	}
	cmds1, err := rs.commands(ctx)
	if err != nil {
		return row, err
	}
	after, err := u.Counters(ctx)
	if err != nil {
		return row, err
	}
	var elapsed time.Duration
	for _, s := range sums {
		row.Accepted += s.OK
		row.Refused += s.Refused
		row.Errors += s.Errors
		elapsed = max(elapsed, s.Elapsed)
		row.LatencyP99MS = max(row.LatencyP99MS, float64(s.Percentile(99).Microseconds())/1000)
	}
	row.Delivered = after.FP.Messages - before.FP.Messages
	row.PeakSessionsPerAccount = after.FP.MaxConcurrentSessionsPerUser
	if row.Delivered > 0 {
		d := float64(row.Delivered)
		row.PerSecond = d / elapsed.Seconds()
		row.ProxyCPUPerMessageMS = float64(cpu.Microseconds()) / 1000 / d
		row.RedisCommandsPerMessage = float64(cmds1-cmds0) / d
		if after.Relayed {
			row.UpstreamRoundTripsPerMsg = float64(after.Relay.RoundTrips-before.Relay.RoundTrips) / d
		}
	}
	e.progress("%s: %d delivered, %.0f msg/s, %.3f ms proxy CPU and %.2f redis commands per message",
		label, row.Delivered, row.PerSecond, row.ProxyCPUPerMessageMS, row.RedisCommandsPerMessage)
	return row, nil
}

// addCluster adds global.cluster.redis_url to the generated config.
func addCluster(path, addr string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	g, _ := cfg["global"].(map[string]any)
	g["cluster"] = map[string]any{"redis_url": "redis://" + addr}
	b, err = json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// redisServer is the private redis-server of a cluster run.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	c    rueidis.Client
}

func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("bench --cluster needs redis-server (apt-get install redis-server): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rdir := filepath.Join(dir, "redis")
	if err := os.Mkdir(rdir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", rdir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(rdir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.done) }() // owned by r: stop waits
	deadline := time.Now().Add(readyTimeout)
	for {
		r.c, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.addr}, ForceSingleClient: true, DisableCache: true})
		if err == nil {
			return r, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.stop()
			return nil, fmt.Errorf("redis-server on %s: %w", r.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *redisServer) do(ctx context.Context, args ...string) error {
	return r.c.Do(ctx, r.c.B().Arbitrary(args...).Build()).Error()
}

// commands is the number of scripts Redis ran (EVALSHA, EVAL): every
// call the proxy makes on a message's path is one. (Commands a script
// runs count in commandstats too, so the total would count each script's
// inside; the rare top-level ZREM of a closed session's slot is left
// out.)
func (r *redisServer) commands(ctx context.Context) (int64, error) {
	info, err := r.c.Do(ctx, r.c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, _ := strconv.ParseInt(calls, 10, 64)
		n += v
	}
	return n, nil
}

func (r *redisServer) stop() {
	if r.c != nil {
		r.c.Close()
	}
	_ = r.cmd.Process.Kill()
	<-r.done
}

// WriteText prints the rows side by side.
func (r *ClusterReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "cluster benchmark: %d accounts, %d connections, %.0fs per configuration\n\n", r.Accounts, r.Connections, r.Duration)
	fmt.Fprintf(w, "%-22s %10s %10s %9s %14s %16s %14s\n", "configuration", "delivered", "msg/s", "p99 ms", "proxy CPU/msg", "redis calls/msg", "peak sess/acct")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%-22s %10d %10.0f %9.1f %11.3f ms %16.2f %14d\n", row.Label, row.Delivered, row.PerSecond,
			row.LatencyP99MS, row.ProxyCPUPerMessageMS, row.RedisCommandsPerMessage, row.PeakSessionsPerAccount)
	}
	if len(r.Rows) >= 2 && r.Rows[0].ProxyCPUPerMessageMS > 0 {
		fmt.Fprintf(w, "\nproxy CPU per message, redis vs file state: %.2fx\n", r.Rows[1].ProxyCPUPerMessageMS/r.Rows[0].ProxyCPUPerMessageMS)
	}
	return nil
}

// WriteJSON prints the report as JSON.
func (r *ClusterReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

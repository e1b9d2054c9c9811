package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// Options are what Open needs besides global.cluster.
type Options struct {
	// Node names this proxy (heartbeat, slot owners); "" means
	// config.Cluster.NodeName, else the host name.
	Node    string
	Metrics *Metrics // nil: unregistered
	Logger  *slog.Logger
	// TLSConfig overrides the TLS settings of a rediss:// URL (tests).
	TLSConfig *tls.Config
}

// Client is this proxy's connection to the shared Redis.
type Client struct {
	r       rueidis.Client
	cfg     config.Cluster
	node    string // heartbeat member: name#boot id, unique per process
	timeout time.Duration
	log     *slog.Logger
	m       *Metrics

	up        atomic.Bool
	live      atomic.Int64 // proxies seen alive at the last heartbeat
	downSince atomic.Int64 // unix ms Redis stopped answering; 0 while up

	slots *slots
	epoch atomic.Value // string: the Redis epoch last seen (epochLua)
	// cand is the epoch this proxy proposes should Redis have none: made
	// at Open and again whenever the epoch changes (so it never equals
	// one this proxy saw), not per call (two crypto/rand reads).
	cand    atomic.Value // string
	emptied atomic.Int64 // new epochs seen: Redis lost its data

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// errDown is what a call returns without trying while Redis is known to
// be unreachable (the heartbeat tries every second).
var errDown = errors.New("redis unreachable")

// heartbeatEvery is how often a proxy says it is alive; a proxy not heard
// of for heartbeatTTL is no longer counted among the live ones.
const (
	heartbeatEvery = time.Second
	heartbeatTTL   = 5 * time.Second
)

// Open connects to the Redis of c (standalone, Sentinel or Redis
// Cluster), checks it (CheckServer: an evicting Redis is refused), and
// starts the heartbeat. The context bounds the connection and the checks.
func Open(ctx context.Context, c config.Cluster, o Options) (*Client, error) {
	if !c.Enabled {
		return nil, errors.New("cluster: global.cluster is not set")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := o.Node
	if name == "" {
		name = c.NodeName
	}
	if name == "" {
		name = "proxy"
	}
	opt := rueidis.ClientOption{
		InitAddress:       c.Addrs,
		Username:          c.Username,
		Password:          c.Password.Reveal(),
		SelectDB:          c.DB,
		DisableCache:      true, // no client-side caching: Valkey and RESP2 proxies work too
		DisableRetry:      true, // a script is never sent twice by the library
		ForceSingleClient: c.SentinelMaster == "" && !c.RedisCluster,
		ConnWriteTimeout:  max(c.Timeout*2, time.Second),
		Dialer:            net.Dialer{Timeout: max(c.Timeout*2, time.Second)},
		ClientName:        "xoauth2-proxy",
	}
	if c.SentinelMaster != "" {
		opt.Sentinel = rueidis.SentinelOption{MasterSet: c.SentinelMaster, Username: c.Username, Password: c.Password.Reveal()}
	}
	if c.TLS {
		opt.TLSConfig = o.TLSConfig
		if opt.TLSConfig == nil {
			opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	r, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to redis %s: %w", strings.Join(c.Addrs, ","), err)
	}
	cl := &Client{r: r, cfg: c, node: name + "#" + bootID(), timeout: c.Timeout, log: log, m: o.Metrics}
	cl.cand.Store(bootID() + bootID())
	if cl.m == nil {
		cl.m = NewMetrics(nil)
	}
	warns, err := cl.CheckServer(ctx)
	for _, w := range warns {
		log.Warn("redis: " + w)
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	if err := cl.beat(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("cluster: first heartbeat: %w", err)
	}
	cl.slots = newSlots(cl)
	hctx, stop := context.WithCancel(context.Background())
	cl.stop = stop
	cl.wg.Add(2)
	go cl.heartbeat(hctx)
	go func() { defer cl.wg.Done(); cl.slots.run(hctx) }()
	return cl, nil
}

// Close stops the heartbeat and closes the connections. Call it after
// closing what uses the client (Sessions, Budget).
func (c *Client) Close() {
	c.stop()
	c.wg.Wait()
	c.r.Close()
}

// Redis is the underlying client, for the packages that keep their own
// shared state in the same Redis (tokens, the account set). Their keys
// must follow Key.
func (c *Client) Redis() rueidis.Client { return c.r }

// Node is this process's name in Redis: node_name and a random suffix
// that differs at each start.
func (c *Client) Node() string { return c.node }

// Timeout is the bound on one Redis call from a message's path.
func (c *Client) Timeout() time.Duration { return c.timeout }

// Up reports whether Redis answered the last call.
func (c *Client) Up() bool { return c.up.Load() }

// Live is the number of proxies seen alive at the last heartbeat (at
// least 1: this one).
func (c *Client) Live() int { return int(max(1, c.live.Load())) }

// downFor is how long Redis has not answered; 0 while it does.
func (c *Client) downFor() time.Duration {
	d := c.downSince.Load()
	if d == 0 || c.up.Load() {
		return 0
	}
	return time.Since(time.UnixMilli(d))
}

// Key is the key of one account's shared item: xp:{account_id}:item.
// The braces are the Redis Cluster hash tag: all of an account's keys are
// on one shard, so one script can use them together.
func Key(accountID, item string) string { return "xp:{" + accountID + "}:" + item }

// nodesKey is the sorted set of live proxies (member: Node, score: when
// its heartbeat expires, Redis time in ms); epochKey and graceKey
// (epochLua) are on the same shard.
const (
	nodesKey = "xp:{nodes}"
	epochKey = "xp:{nodes}:epoch"
	graceKey = "xp:{nodes}:grace"
	// nodeInfoKey holds, by Node, what each proxy reported at its last
	// heartbeat ("<session slots held> <unix ms>"), for the console.
	nodeInfoKey = "xp:{nodes}:info"
)

// failed records a failed call: a network or timeout error takes the
// client down (local shares) until the next heartbeat that succeeds.
func (c *Client) failed(err error) {
	if err == nil || !isOutage(err) {
		return
	}
	if c.up.Swap(false) {
		c.downSince.Store(time.Now().UnixMilli())
		c.m.up.Set(0)
		c.log.Warn("redis unreachable: running on local shares of caps and budgets", "err", err, "live_proxies", c.Live())
	}
}

// isOutage tells a Redis that did not answer (network, timeout, closing,
// a failover in progress) from one that answered with an error.
func isOutage(err error) bool {
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		// LOADING, MASTERDOWN, READONLY (a replica after failover),
		// TRYAGAIN, CLUSTERDOWN: Redis is there but cannot serve yet.
		s := re.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN"} {
			if strings.HasPrefix(s, p) {
				return true
			}
		}
		return false
	}
	return true
}

// call bounds ctx by the client's timeout.
func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

var heartbeatScript = rueidis.NewLuaScript(epochLua + `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
local e = epoch(KEYS[2], KEYS[3], ARGV[3], ARGV[4], tonumber(ARGV[5]))
return {redis.call('ZCARD', KEYS[1]), e}`)

// epochArgs are the epoch this proxy knows ("" before the first answer)
// and a new random one, for a script that may find Redis emptied.
func (c *Client) epochArgs() (known, cand string) {
	if c.cfg.RedisCluster {
		return "", ""
	}
	known, _ = c.epoch.Load().(string)
	cand, _ = c.cand.Load().(string)
	return known, cand
}

// sawEpoch records the epoch a script returned; a new one means Redis
// was emptied: the held slots are registered again at once and the
// budgets re-seeded (emptied).
func (c *Client) sawEpoch(e string) {
	old, _ := c.epoch.Swap(e).(string)
	if old != e {
		c.cand.Store(bootID() + bootID())
	}
	if old != "" && old != e {
		c.log.Warn("redis lost its data (restarted empty or flushed): registering this proxy's sessions and budget counts again")
		c.emptied.Add(1)
	}
}

// beat says this proxy is alive and counts the live ones.
func (c *Client) beat(ctx context.Context) error {
	ctx, cancel := c.call(ctx)
	defer cancel()
	known, cand := c.epochArgs()
	if cand == "" {
		known, cand = "", "cluster" // the heartbeat reaches one shard of several: no epoch
	}
	r, err := heartbeatScript.Exec(ctx, c.r, []string{nodesKey, epochKey, graceKey},
		[]string{c.node, fmt.Sprint(heartbeatTTL.Milliseconds()), known, cand, fmt.Sprint(c.cfg.SessionLease.Milliseconds())}).ToArray()
	if err == nil && len(r) != 2 {
		err = errors.New("malformed heartbeat reply")
	}
	if err != nil {
		c.failed(err)
		return err
	}
	n, _ := r[0].AsInt64()
	if e, _ := r[1].ToString(); e != "" && !c.cfg.RedisCluster {
		c.sawEpoch(e)
	}
	// Best effort, for the console's list of proxies only.
	_ = c.r.Do(ctx, c.r.B().Hset().Key(nodeInfoKey).FieldValue().
		FieldValue(c.node, fmt.Sprintf("%d %d", c.Held(), time.Now().UnixMilli())).Build()).Error()
	c.live.Store(n)
	c.m.live.Set(float64(n))
	if !c.up.Swap(true) {
		c.m.up.Set(1)
		if d := c.downSince.Swap(0); d != 0 {
			c.log.Info("redis reachable again: back on shared caps and budgets", "after", time.Since(time.UnixMilli(d)).Round(time.Millisecond))
		}
	}
	return nil
}

// heartbeat beats every second until ctx ends, then takes this proxy out
// of the live set.
func (c *Client) heartbeat(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			bye, cancel := context.WithTimeout(context.Background(), c.timeout)
			_ = c.r.Do(bye, c.r.B().Zrem().Key(nodesKey).Member(c.node).Build()).Error()
			_ = c.r.Do(bye, c.r.B().Hdel().Key(nodeInfoKey).Field(c.node).Build()).Error()
			cancel()
			return
		case <-t.C:
			_ = c.beat(ctx)
		}
	}
}

func bootID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Cluster is "global.cluster" (or --redis): several proxies share the
// accounts' session caps, budgets and cool-downs through Redis
// (docs/CLUSTER.md). The zero value, Enabled false, is one proxy on its
// own state files.
type Cluster struct {
	// Enabled is set when redis_url, sentinel or cluster_addresses is.
	Enabled bool
	// Addrs are host:port: the one server of redis_url, the Sentinels, or
	// the Redis Cluster seed nodes.
	Addrs []string
	// SentinelMaster is sentinel.master_name; "" when not on Sentinel.
	SentinelMaster string
	// RedisCluster is set for cluster_addresses (Redis Cluster).
	RedisCluster bool
	// TLS is set for a rediss:// URL.
	TLS bool
	// Username and Password are the ACL user (the URL's user, "" for
	// "default") and its password: from the URL, else password_file, else
	// the environment variable password_env.
	Username string
	Password secret.String
	// DB is the URL's database number (/0 by default; standalone only).
	DB int
	// NodeName names this proxy in Redis (heartbeats, leases); default
	// the host name and the SMTP port, set by the service.
	NodeName string
	// Timeout bounds one Redis call from a message's path ("timeout",
	// seconds; default 0.5). After it the proxy goes on on its local share.
	Timeout time.Duration
	// SessionLease is how long a session slot is held without renewal
	// ("session_lease_seconds", default 15); SessionRenew how often held
	// slots are renewed ("session_renew_seconds", default 5, less than a
	// third of the lease).
	SessionLease time.Duration
	SessionRenew time.Duration
}

func defaultCluster() Cluster {
	return Cluster{Timeout: 500 * time.Millisecond, SessionLease: 15 * time.Second, SessionRenew: 5 * time.Second}
}

// parseCluster reads "global.cluster".
func parseCluster(o *object, c *Cluster, dir string) {
	if o == nil {
		return
	}
	var raw string
	if o.str("redis_url", &raw) {
		if err := c.SetURL(raw); err != nil {
			o.errorf("redis_url", "%v", err) // SetURL never puts the password in its errors
		}
	}
	if s := o.child("sentinel"); s != nil {
		s.str("master_name", &c.SentinelMaster)
		c.Addrs = append(c.Addrs, addrList(s, "addresses", 26379)...)
		if c.SentinelMaster == "" || len(c.Addrs) == 0 {
			s.errorf("master_name", "Sentinel needs master_name and addresses")
		}
		s.finish()
	}
	if v := addrList(o, "cluster_addresses", 6379); len(v) > 0 {
		c.Addrs, c.RedisCluster = append(c.Addrs, v...), true
	}
	if c.SentinelMaster != "" && c.RedisCluster {
		o.errorf("sentinel", "Sentinel and cluster_addresses exclude each other")
	}
	var file, env string
	if o.str("password_file", &file) && c.Password.Empty() {
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			o.errorf("password_file", "%v", err)
		}
		c.Password = secret.New(strings.TrimSpace(string(b)))
	}
	if o.str("password_env", &env) && c.Password.Empty() {
		c.Password = secret.New(os.Getenv(env))
		if c.Password.Empty() {
			o.warnf("password_env", "environment variable %s is empty", env)
		}
	}
	o.str("username", &c.Username)
	o.str("node_name", &c.NodeName)
	o.seconds("timeout", true, &c.Timeout)
	o.seconds("session_lease_seconds", true, &c.SessionLease)
	o.seconds("session_renew_seconds", true, &c.SessionRenew)
	if c.SessionRenew*3 > c.SessionLease {
		o.errorf("session_renew_seconds", "must be at most a third of session_lease_seconds (%v)", c.SessionLease)
	}
	c.Enabled = len(c.Addrs) > 0
	if !c.Enabled {
		o.errorf("redis_url", "global.cluster needs redis_url, sentinel or cluster_addresses")
	}
	o.finish()
}

// SetURL applies a redis:// or rediss:// URL (redis_url, --redis):
// [user[:password]@]host[:port][/db]. Its errors never hold the password.
func (c *Cluster) SetURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a redis:// URL") // url's error would quote the password
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		c.TLS = true
	default:
		return fmt.Errorf("scheme %q: want redis:// or rediss://", u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("no host")
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6379")
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if c.DB, err = strconv.Atoi(p); err != nil || c.DB < 0 {
			return fmt.Errorf("database %q: want a number", p)
		}
	}
	if u.User != nil {
		c.Username = u.User.Username()
		if p, ok := u.User.Password(); ok {
			c.Password = secret.New(p)
		}
	}
	c.Addrs, c.Enabled = []string{host}, true
	return nil
}

// addrList reads a list of host[:port] strings.
func addrList(o *object, key string, defPort int) []string {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		o.errorf(key, "must be a list of host:port strings")
		return nil
	}
	var out []string
	for _, e := range list {
		s, ok := e.(string)
		if !ok || s == "" {
			o.errorf(key, "must be a list of host:port strings")
			return nil
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, strconv.Itoa(defPort))
		}
		out = append(out, s)
	}
	return out
}

package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of three masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// Addrs are the masters' addresses, the seeds a cluster client is given.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return a
}

// StartCluster runs three redis-server --cluster-enabled yes on loopback,
// joins them with redis-cli --cluster create (slots split in three) and
// returns once every node reports cluster_state:ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	cli := require(t, "redis-cli", "redis-tools")
	c := &Cluster{}
	for range 3 {
		c.Nodes = append(c.Nodes, Start(t, Options{Args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
		}}))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range c.Nodes {
		for {
			info, err := Do(n.Addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok: %q %v", n.Addr, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// Sentinel is a master, one replica and one Sentinel watching them.
type Sentinel struct {
	MasterName string
	Master     *Server
	Replica    *Server
	// Addr is the Sentinel's address.
	Addr string
}

// StartSentinel runs a master, a replica of it and a Sentinel (quorum 1,
// down after 1 s, so that Failover and a killed master fail over within a
// few seconds). t.Cleanup stops all three.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := Require(t)
	master := Start(t, Options{})
	replica := Start(t, Options{Args: []string{"--replicaof", "127.0.0.1", port(master.Addr)}})
	dir := t.TempDir()
	addr := freeAddr(t)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\n"+
		"sentinel monitor xp 127.0.0.1 %s 1\n"+
		"sentinel down-after-milliseconds xp 1000\n"+
		"sentinel failover-timeout xp 5000\n", port(addr), dir, port(master.Addr))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{Dir: dir, t: t, bin: bin, args: []string{"--sentinel"}}
	cmd := exec.Command(bin, conf, "--sentinel", "--logfile", filepath.Join(dir, "sentinel.log"))
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.Addr, s.cmd = addr, cmd
	s.mu.Unlock()
	s.waitFor(cmd, exited)
	t.Cleanup(s.Stop)
	if err := waitReady(addr, exited, 30*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
		t.Fatalf("sentinel on %s: %v\n%s", addr, err, log)
	}
	return &Sentinel{MasterName: "xp", Master: master, Replica: replica, Addr: addr}
}

// MasterAddr asks the Sentinel which address is the master now.
func (s *Sentinel) MasterAddr() (string, error) {
	r, err := Do(s.Addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName)
	return strings.Replace(r, "\n", ":", 1), err
}

func port(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}

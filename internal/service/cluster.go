package service

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// clusterRuntime is cluster mode's part of the service (global.cluster,
// --redis): the Redis client, whose slot gate every account's sessions
// hold, and the shared budgets. Nil pieces when off.
type clusterRuntime struct {
	client *cluster.Client
	budget *cluster.Budget
}

// openCluster connects to Redis when global.cluster is set and returns
// the budget the accounts use: the shared one in cluster mode, local
// otherwise. A Redis that evicts keys, or that cannot be reached at
// start, stops the start (later outages run on local shares).
func (s *Service) openCluster(local *quota.Book) (quota.Budget, error) {
	if !s.Snap.Global.Cluster.Enabled {
		return local, nil
	}
	cl, err := s.clusterClient(s.Snap.Global.Cluster)
	if err != nil {
		return nil, err
	}
	// The local book, saved to budgets.json, becomes this proxy's own
	// counts: what it adds back to a Redis that lost its data.
	s.cluster.budget = cl.NewBudget(s.Snap.Global.Listener.DataTimeout+5*time.Minute, local)
	s.log.Info("cluster mode: caps, budgets and cool-downs shared through redis", "node", cl.Node(), "live_proxies", cl.Live())
	return s.cluster.budget, nil
}

// clusterClient is the proxy's one Redis client (and so its one node in
// the heartbeat's count of live proxies), opened by the first of its users:
// the shared account set and tokens (shared.go), then caps and budgets.
func (s *Service) clusterClient(c config.Cluster) (*cluster.Client, error) {
	if s.cluster.client != nil {
		return s.cluster.client, nil
	}
	node := c.NodeName
	if node == "" {
		host, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(s.opts.Listen)
		node = host + ":" + port
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := cluster.Open(ctx, c, cluster.Options{Node: node, Metrics: cluster.NewMetrics(s.metrics), Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("cluster mode: %w", err)
	}
	s.cluster.client = cl
	return cl, nil
}

// clusterSlots is the session slot gate in cluster mode, nil otherwise.
func (s *Service) clusterSlots() account.SlotGate {
	if s.cluster.client == nil {
		return nil
	}
	return s.cluster.client.Slots()
}

// closeCluster stops the budget flusher and the client, after the
// accounts' sessions closed (their slots are given back first).
func (s *Service) closeCluster() {
	if s.cluster.budget != nil {
		s.cluster.budget.Close()
		s.cluster.budget = nil
	}
	if s.cluster.client != nil {
		s.cluster.client.Close()
		s.cluster.client = nil
	}
}

// ReadyDetail is what /readyz adds in cluster mode: whether Redis
// answers (the proxy stays ready without it, on local shares), the live
// proxies and the session slots this one holds.
func (s *Service) ReadyDetail() map[string]any {
	cl := s.cluster.client
	if cl == nil {
		return nil
	}
	redis := "up"
	if !cl.Up() {
		redis = "unreachable: local shares"
	}
	return map[string]any{"cluster": map[string]any{
		"redis": redis, "node": cl.Node(), "live_proxies": cl.Live(), "session_slots_held": cl.Held(),
	}}
}

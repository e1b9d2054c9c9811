package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"
)

// ErrEvicting means Redis may evict keys under memory pressure
// (maxmemory-policy other than noeviction): a slot lease or a budget
// counter evicted is a cap or budget silently broken, so the proxy
// refuses to start.
var ErrEvicting = errors.New("redis maxmemory-policy is not noeviction")

// CheckServer reads the configuration of every master: it returns an
// ErrEvicting error when one could evict keys, and warnings when one
// persists nothing (a restart then empties it: budgets start over, see
// docs/CLUSTER.md) or when CONFIG is refused (managed services), so that
// these could not be checked.
func (c *Client) CheckServer(ctx context.Context) (warnings []string, err error) {
	nodes := map[string]rueidis.Client{"": c.r}
	if c.cfg.RedisCluster {
		nodes = c.r.Nodes()
	}
	for addr, n := range nodes {
		w, err := checkNode(ctx, n, addr)
		warnings = append(warnings, w...)
		if err != nil {
			return warnings, err
		}
	}
	return warnings, nil
}

func checkNode(ctx context.Context, n rueidis.Client, addr string) ([]string, error) {
	at := ""
	if addr != "" {
		at = " on " + addr
	}
	get := func(name string) (string, error) {
		m, err := n.Do(ctx, n.B().ConfigGet().Parameter(name).Build()).AsStrMap()
		if err != nil {
			return "", err
		}
		return m[name], nil
	}
	policy, err := get("maxmemory-policy")
	if err != nil {
		var re *rueidis.RedisError
		if errors.As(err, &re) {
			return []string{fmt.Sprintf("CONFIG GET refused%s (%v): could not check that maxmemory-policy is noeviction and that data persists; make sure of both (docs/CLUSTER.md)", at, re)}, nil
		}
		return nil, fmt.Errorf("cluster: check redis%s: %w", at, err)
	}
	if policy != "noeviction" {
		return nil, fmt.Errorf("cluster: %w%s (it is %q): set maxmemory-policy noeviction, or evicted leases and counters would break caps and budgets", ErrEvicting, at, policy)
	}
	aof, err1 := get("appendonly")
	save, err2 := get("save")
	if err1 == nil && err2 == nil && aof != "yes" && strings.TrimSpace(save) == "" {
		return []string{"redis" + at + " persists nothing (appendonly no, save \"\"): a restart empties it and budgets start over"}, nil
	}
	return nil, nil
}

package cluster

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Proxy is one proxy of the cluster as its heartbeats describe it.
type Proxy struct {
	Node string
	// LastSeen is when its last heartbeat reported (its own clock).
	LastSeen time.Time
	// SessionsHeld is the session slots it held then.
	SessionsHeld int
}

// Proxies lists the proxies alive now (their heartbeat not expired), by
// node name, for the console and the operator.
func (c *Client) Proxies(ctx context.Context) ([]Proxy, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	now, err := c.r.Do(ctx, c.r.B().Time().Build()).AsStrSlice()
	if err != nil || len(now) != 2 {
		c.failed(err)
		return nil, err
	}
	sec, _ := strconv.ParseInt(now[0], 10, 64)
	usec, _ := strconv.ParseInt(now[1], 10, 64)
	nowMS := sec*1000 + usec/1000
	live, err := c.r.Do(ctx, c.r.B().Zrangebyscore().Key(nodesKey).
		Min(strconv.FormatInt(nowMS, 10)).Max("+inf").Build()).AsStrSlice()
	if err != nil {
		c.failed(err)
		return nil, err
	}
	info, err := c.r.Do(ctx, c.r.B().Hgetall().Key(nodeInfoKey).Build()).AsStrMap()
	if err != nil {
		c.failed(err)
		return nil, err
	}
	out := make([]Proxy, 0, len(live))
	alive := make(map[string]bool, len(live))
	for _, node := range live {
		alive[node] = true
		p := Proxy{Node: node}
		held, ms, _ := strings.Cut(info[node], " ")
		p.SessionsHeld, _ = strconv.Atoi(held)
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
			p.LastSeen = time.UnixMilli(n)
		}
		out = append(out, p)
	}
	for node := range info {
		if !alive[node] {
			// A proxy that died without saying goodbye (kill -9): its
			// heartbeat expired, its entry goes (best effort).
			_ = c.r.Do(ctx, c.r.B().Hdel().Key(nodeInfoKey).Field(node).Build()).Error()
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

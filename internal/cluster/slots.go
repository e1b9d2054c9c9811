package cluster

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/pool"
)

// A session slot is a member of the account's sorted set xp:{id}:slots
// whose score is its expiry in Redis time (ms). Taking one prunes the
// expired members and adds one only below the cap, in one script, so the
// proxies together never hold more than the cap. The holder renews all
// its slots in one pipelined batch every SessionRenew; a slot whose
// renewal has not been confirmed by the end of its lease, as this host
// measures it from before the request was sent (so never later than Redis
// expires it), has its session closed.
//
// A Redis that restarted empty has lost every slot: for one lease after
// (epochLua) it only takes back slots that their holders renew, and
// refuses new ones, so that the sessions still open from before are all
// counted again before new ones are added.

var acquireScript = rueidis.NewLuaScript(epochLua + `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = tonumber(ARGV[3])
local e = ''
if ARGV[5] ~= '' then
  local grace
  e, grace = epoch(KEYS[2], KEYS[3], ARGV[4], ARGV[5], lease)
  if grace then
    return {0, math.max(redis.call('PTTL', KEYS[3]), 100), e}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now, e}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return {1, 0, e}`)

// renewScript extends the slots ARGV[3..] of one account; a slot Redis
// no longer holds (expired, or Redis restarted empty) is taken again when
// the cap allows. It returns 1 or 0 per slot.
var renewScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local cap, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) or redis.call('ZCARD', KEYS[1]) < cap then
    redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return out`)

// slot is one held session slot.
type slot struct {
	s    *slots
	acct string
	id   string
	cap  int
	// deadline (unix ms, this host's clock) is when the session must be
	// closed unless a renewal confirms the slot first.
	deadline atomic.Int64
	lost     atomic.Bool
	released atomic.Bool

	mu      sync.Mutex
	session io.Closer
}

func (sl *slot) Bind(c io.Closer) {
	sl.mu.Lock()
	sl.session = c
	lost := sl.lost.Load()
	sl.mu.Unlock()
	if lost {
		_ = c.Close()
	}
}

func (sl *slot) Lost() bool { return sl.lost.Load() }

func (sl *slot) Release() {
	if sl.released.Swap(true) {
		return
	}
	sl.s.forget(sl)
	if sl.lost.Load() {
		return // not ours in Redis any more
	}
	c := sl.s.c
	if !c.Up() {
		return // expires by itself
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.failed(c.r.Do(ctx, c.r.B().Zrem().Key(Key(sl.acct, "slots")).Member(sl.id).Build()).Error())
}

// lose closes the slot's session: its lease could not be kept.
func (sl *slot) lose() {
	if sl.lost.Swap(true) {
		return
	}
	sl.s.c.m.slotsLost.Inc()
	sl.mu.Lock()
	c := sl.session
	sl.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// slots is the Client's SlotGate: the slots this proxy holds, by account.
type slots struct {
	c            *Client
	lease, renew time.Duration
	seq          atomic.Uint64

	mu   sync.Mutex
	held map[string]map[*slot]struct{}
}

func newSlots(c *Client) *slots {
	return &slots{c: c, lease: c.cfg.SessionLease, renew: c.cfg.SessionRenew, held: map[string]map[*slot]struct{}{}}
}

// Slots is the gate that makes account sessions hold cluster-wide slots
// (account.SessionOptions.Slots).
func (c *Client) Slots() account.SlotGate { return c.slots }

// Held is the number of session slots this proxy holds now.
func (c *Client) Held() int {
	if c.slots == nil {
		return 0 // Open's first heartbeat comes before the slots
	}
	c.slots.mu.Lock()
	defer c.slots.mu.Unlock()
	n := 0
	for _, m := range c.slots.held {
		n += len(m)
	}
	return n
}

func (s *slots) forget(sl *slot) {
	s.mu.Lock()
	delete(s.held[sl.acct], sl)
	if len(s.held[sl.acct]) == 0 {
		delete(s.held, sl.acct)
	}
	s.mu.Unlock()
	s.c.m.slotsHeld.Dec()
}

func (s *slots) keep(sl *slot) {
	s.mu.Lock()
	if s.held[sl.acct] == nil {
		s.held[sl.acct] = map[*slot]struct{}{}
	}
	s.held[sl.acct][sl] = struct{}{}
	s.mu.Unlock()
	s.c.m.slotsHeld.Inc()
}

// heldBy is the number of slots this proxy holds for acct.
func (s *slots) heldBy(acct string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held[acct])
}

// Acquire implements account.SlotGate.
func (s *slots) Acquire(ctx context.Context, acct string, cap int, deadline time.Time) (account.Slot, error) {
	sl := &slot{s: s, acct: acct, cap: cap, id: s.c.node + ":" + strconv.FormatUint(s.seq.Add(1), 36)}
	for {
		sent := time.Now()
		wait, err := s.try(ctx, sl)
		if err == nil && wait == 0 {
			sl.deadline.Store(sent.Add(s.lease).UnixMilli())
			s.keep(sl)
			return sl, nil
		}
		if err != nil {
			// Redis did not answer: this proxy's share of the cap.
			s.c.m.fallbacks.WithLabelValues("session").Inc()
			// Only after one lease: by then every proxy's slots beyond
			// its share have run out (renewAll), so the shares add up
			// to at most the cap.
			if s.c.downFor() >= s.lease && s.heldBy(acct) < share(cap, s.c.Live()) {
				sl.deadline.Store(sent.Add(s.lease).UnixMilli())
				s.keep(sl)
				return sl, nil
			}
			wait = 100 * time.Millisecond
		}
		wait = min(max(wait, 10*time.Millisecond), 250*time.Millisecond)
		if deadline.IsZero() || time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("account %s: every session slot of the cluster is held: %w", acct, pool.ErrBusy)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("account %s: waiting for a session slot: %w", acct, pool.ErrBusy)
		case <-t.C:
		}
	}
}

// try runs the acquire script once: 0 and nil when the slot is taken,
// how long to wait before trying again when the cap is full, or an error
// when Redis did not answer.
func (s *slots) try(ctx context.Context, sl *slot) (time.Duration, error) {
	if !s.c.Up() {
		return 0, errDown
	}
	ctx, cancel := s.c.call(ctx)
	defer cancel()
	keys := []string{Key(sl.acct, "slots"), epochKey, graceKey}
	known, cand := s.c.epochArgs()
	if s.c.cfg.RedisCluster {
		keys = keys[:1]
	}
	r, err := acquireScript.Exec(ctx, s.c.r, keys,
		[]string{sl.id, strconv.Itoa(sl.cap), strconv.FormatInt(s.lease.Milliseconds(), 10), known, cand}).ToArray()
	if err != nil {
		s.c.failed(err)
		if isOutage(err) {
			return 0, err
		}
		return 0, fmt.Errorf("account %s: session slot script: %w", sl.acct, err)
	}
	if len(r) != 3 {
		return 0, fmt.Errorf("account %s: session slot script: malformed reply", sl.acct)
	}
	ok, _ := r[0].AsInt64()
	wait, _ := r[1].AsInt64()
	if e, _ := r[2].ToString(); e != "" {
		s.c.sawEpoch(e)
	}
	if ok == 1 {
		return 0, nil
	}
	return time.Duration(max(wait, 1)) * time.Millisecond, nil
}

// share is one proxy's part of cap while Redis is unreachable: cap over
// the proxies last seen alive, at least 1.
func share(cap, live int) int { return max(1, cap/max(1, live)) }

// renewAll renews every held slot, one script per account, pipelined;
// while Redis is unreachable it keeps this proxy's share of each account
// and lets the rest run out. Slots past their deadline lose their
// session.
func (s *slots) renewAll(ctx context.Context) {
	s.mu.Lock()
	byAcct := make(map[string][]*slot, len(s.held))
	for a, m := range s.held {
		for sl := range m {
			// A lost slot's session is closed (or closes at its return):
			// renewing it would put it back in Redis and hold the cap.
			if !sl.lost.Load() {
				byAcct[a] = append(byAcct[a], sl)
			}
		}
	}
	s.mu.Unlock()
	if len(byAcct) == 0 {
		return
	}
	if s.c.Up() {
		accts := make([]string, 0, len(byAcct))
		execs := make([]rueidis.LuaExec, 0, len(byAcct))
		for a, list := range byAcct {
			args := []string{strconv.Itoa(list[0].cap), strconv.FormatInt(s.lease.Milliseconds(), 10)}
			for _, sl := range list {
				args = append(args, sl.id)
			}
			accts = append(accts, a)
			execs = append(execs, rueidis.LuaExec{Keys: []string{Key(a, "slots")}, Args: args})
		}
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, max(s.c.timeout, s.lease/3))
		res := renewScript.ExecMulti(cctx, s.c.r, execs...)
		cancel()
		for i, r := range res {
			ok, err := r.AsIntSlice()
			if err != nil {
				s.c.failed(err)
				continue // deadline unchanged: closed below if it passes
			}
			for j, sl := range byAcct[accts[i]] {
				if j < len(ok) && ok[j] == 1 {
					sl.deadline.Store(sent.Add(s.lease).UnixMilli())
				} else {
					sl.lose()
				}
			}
		}
	} else {
		for _, list := range byAcct {
			n := share(list[0].cap, s.c.Live())
			for i, sl := range list {
				if i < n && !sl.lost.Load() {
					sl.deadline.Store(time.Now().Add(s.lease).UnixMilli())
				}
			}
		}
	}
	now := time.Now().UnixMilli()
	for _, list := range byAcct {
		for _, sl := range list {
			if now >= sl.deadline.Load() {
				sl.lose()
			}
		}
	}
}

// run renews the held slots every renew interval, and at once when Redis
// comes back, until ctx ends.
func (s *slots) run(ctx context.Context) {
	t := time.NewTicker(min(s.renew, 200*time.Millisecond))
	defer t.Stop()
	last := time.Now()
	wasUp := s.c.Up()
	emptied := s.c.emptied.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		up := s.c.Up()
		r := s.c.emptied.Load()
		if time.Since(last) >= s.renew || (up && !wasUp) || r != emptied || s.nearDeadline() {
			emptied = r
			s.renewAll(ctx)
			last = time.Now()
		}
		wasUp = up
	}
}

// nearDeadline reports a slot within two ticks of its deadline (a renewal
// failed): try again now rather than at the next interval.
func (s *slots) nearDeadline() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := time.Now().Add(2 * time.Second).UnixMilli()
	for _, m := range s.held {
		for sl := range m {
			if !sl.lost.Load() && sl.deadline.Load() <= limit {
				return true
			}
		}
	}
	return false
}

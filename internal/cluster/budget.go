package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/quota"
)

// Budget is the quota.Budget of a cluster: the rolling windows,
// reservations in flight and cool-downs of each account live in Redis
// (scripts.go), so that all proxies together never accept more than a
// limit, and a cool-down learned on one proxy stops the others at their
// next Admit.
//
// A message costs one script at Admit, which also reserves its first
// recipient; each further recipient costs one; Done is queued and rides
// on the account's next Admit, or is flushed within flushEvery when none
// comes. While Redis does not answer (after localAfter: a restart or
// failover only costs a few 451s), Admit decides on a local Book with
// this proxy's share of what was left at the last answer (the remainder
// over the live proxies); what it accepts meanwhile is added to Redis when
// Redis answers again. Each proxy also keeps its own accepted counts
// (mirror), which it adds back when Redis restarted empty.
type Budget struct {
	c      *Client
	ttl    time.Duration // a reservation's life in Redis
	local  *quota.Book   // decisions while Redis is unreachable
	mirror *quota.Book   // this proxy's accepted counts, by account
	seq    atomic.Uint64

	mu   sync.Mutex
	seen map[string][4]int     // windows' use at Redis's last answer
	jobs map[string][]finished // Done waiting for the account's next call
	owed map[string][2]int     // accepted on the local share: messages, recipients

	kick chan struct{}
	stop context.CancelFunc
	wg   sync.WaitGroup
}

type finished struct {
	ticket   string
	accepted bool
	rcpts    int
	at       time.Time
}

// flushEvery bounds how long a finished ticket waits for its account's
// next Admit before it is sent alone.
const flushEvery = 50 * time.Millisecond

// windowNames are the Denial texts of the four windows, as quota.Book
// says them.
var windowNames = [4]string{"per-minute message budget", "hourly message budget", "daily message budget", "daily recipient budget"}

// NewBudget returns the cluster's Budget and starts its flusher; Close
// stops it. ttl bounds a reservation (longer than any transaction: the
// client DATA timeout); 0 means 15 minutes. mirror keeps this proxy's
// own accepted counts (the service passes the book it saves to
// budgets.json, so that they outlive a restart); nil means a new one.
func (c *Client) NewBudget(ttl time.Duration, mirror *quota.Book) *Budget {
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	if mirror == nil {
		mirror = quota.NewBook(nil)
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &Budget{c: c, ttl: ttl, local: quota.NewBook(nil), mirror: mirror,
		seen: map[string][4]int{}, jobs: map[string][]finished{}, owed: map[string][2]int{},
		kick: make(chan struct{}, 1), stop: stop}
	b.wg.Add(1)
	go b.run(ctx)
	return b
}

// Close flushes what is queued (bounded by the client's timeout) and
// stops the flusher.
func (b *Budget) Close() {
	b.stop()
	b.wg.Wait()
}

func keys(acct string) []string {
	return []string{Key(acct, "b"), Key(acct, "p"), Key(acct, "pr"), Key(acct, "cool")}
}

// take removes and returns acct's queued finished tickets as script
// arguments.
func (b *Budget) take(acct string) ([]finished, []string) {
	b.mu.Lock()
	jobs := b.jobs[acct]
	delete(b.jobs, acct)
	b.mu.Unlock()
	args := make([]string, 0, 3*len(jobs))
	for _, j := range jobs {
		args = append(args, j.ticket, boolArg(j.accepted), strconv.Itoa(j.rcpts))
	}
	return jobs, args
}

// giveBack requeues finished tickets a call could not deliver: accepted
// ones become owed (their reservations expire in Redis by themselves).
func (b *Budget) giveBack(acct string, jobs []finished) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o := b.owed[acct]
	for _, j := range jobs {
		if j.accepted {
			o[0]++
			o[1] += j.rcpts
		}
	}
	b.owed[acct] = o
}

// localAfter is how long Redis must have been unreachable before Admit
// decides on the local share: a Redis restart or failover of a few
// seconds costs a few 451s, never a decision on counts that are stale.
const localAfter = heartbeatTTL

// errGrace means Redis was emptied and the proxies are adding their
// counts back (epochLua).
var errGrace = errors.New("redis was emptied: counts being re-seeded")

// waitDenial refuses a message for a moment: the shared counts cannot be
// read now and it is too early to decide on the local share.
func waitDenial(in time.Duration) *quota.Denial {
	return &quota.Denial{Limit: "budget (shared counts unavailable)", ResetIn: in, Until: time.Now().Add(in)}
}

// Admit implements quota.Budget.
func (b *Budget) Admit(ctx context.Context, acct string, l quota.Limits) (quota.Ticket, *quota.Denial) {
	if b.c.Up() {
		tk, d, err := b.admitShared(ctx, acct, l)
		switch {
		case err == nil:
			return tk, d
		case errors.Is(err, errGrace):
			return nil, waitDenial(2 * time.Second)
		}
	}
	if b.c.downFor() < localAfter {
		return nil, waitDenial(localAfter)
	}
	b.c.m.fallbacks.WithLabelValues("admit").Inc()
	return b.admitLocal(ctx, acct, l)
}

func (b *Budget) admitShared(ctx context.Context, acct string, l quota.Limits) (quota.Ticket, *quota.Denial, error) {
	id := b.c.node + ":" + strconv.FormatUint(b.seq.Add(1), 36)
	jobs, done := b.take(acct)
	ks := keys(acct)
	known, cand := b.c.epochArgs()
	if !b.c.cfg.RedisCluster {
		ks = append(ks, epochKey, graceKey)
	}
	args := append([]string{id, strconv.FormatInt(b.ttl.Milliseconds(), 10),
		strconv.Itoa(l.MessagesPerMinute), strconv.Itoa(l.MessagesPerHour), strconv.Itoa(l.MessagesPerDay),
		strconv.Itoa(l.RecipientsPerDay), known, cand}, done...)
	cctx, cancel := b.c.call(ctx)
	r, err := admitScript.Exec(cctx, b.c.r, ks, args).ToArray()
	cancel()
	if err != nil {
		b.giveBack(acct, jobs)
		b.c.failed(err)
		return nil, nil, err
	}
	kind, _ := r[0].ToString()
	now := time.Now()
	switch kind {
	case "ok":
		b.saw(acct, r[1:])
		return &ticket{b: b, acct: acct, id: id, l: l, held: 1}, nil, nil
	case "deny":
		which, _ := r[1].AsInt64()
		secs, _ := r[2].AsInt64()
		b.saw(acct, r[3:])
		in := time.Duration(secs) * time.Second
		if in <= 0 {
			in = time.Second // only reservations in flight: soon
		}
		return nil, &quota.Denial{Limit: windowNames[min(max(which, 1), 4)-1], ResetIn: in, Until: now.Add(in)}, nil
	case "cool":
		ms, _ := r[1].AsInt64()
		cause, _ := r[2].ToString()
		in := time.Duration(ms) * time.Millisecond
		return nil, &quota.Denial{Limit: "cooling down", ResetIn: in, Until: now.Add(in), Cause: cause}, nil
	case "grace":
		e, _ := r[1].ToString()
		b.giveBack(acct, jobs)
		b.c.sawEpoch(e)
		return nil, nil, errGrace
	}
	return nil, nil, fmt.Errorf("account %s: admit script: unknown reply %q", acct, kind)
}

// saw records the windows' use Redis reported.
func (b *Budget) saw(acct string, r []rueidis.RedisMessage) {
	if len(r) < 4 {
		return
	}
	var u [4]int
	for i := range u {
		v, _ := r[i].AsInt64()
		u[i] = int(v)
	}
	b.mu.Lock()
	b.seen[acct] = u
	b.mu.Unlock()
}

// admitLocal decides on this proxy's share: the remainder of each limit
// at Redis's last answer, over the live proxies.
func (b *Budget) admitLocal(ctx context.Context, acct string, l quota.Limits) (quota.Ticket, *quota.Denial) {
	b.mu.Lock()
	u := b.seen[acct]
	b.mu.Unlock()
	live := b.c.Live()
	part := func(limit, used int) (int, bool) {
		if limit <= 0 {
			return 0, true
		}
		n := (limit - used) / live
		return n, n > 0
	}
	var sl quota.Limits
	var ok [4]bool
	sl.MessagesPerMinute, ok[0] = part(l.MessagesPerMinute, u[0])
	sl.MessagesPerHour, ok[1] = part(l.MessagesPerHour, u[1])
	sl.MessagesPerDay, ok[2] = part(l.MessagesPerDay, u[2])
	sl.RecipientsPerDay, ok[3] = part(l.RecipientsPerDay, u[3])
	sl.RecipientsPerMessage = l.RecipientsPerMessage
	for i, fits := range ok {
		if !fits {
			return nil, &quota.Denial{Limit: windowNames[i], ResetIn: time.Minute, Until: time.Now().Add(time.Minute)}
		}
	}
	tk, d := b.local.Admit(ctx, acct, sl)
	if d != nil {
		return nil, d
	}
	return &localTicket{Ticket: tk, b: b, acct: acct}, nil
}

// ticket is a reservation held in Redis.
type ticket struct {
	b     *Budget
	acct  string
	id    string
	l     quota.Limits
	rcpts int // recipients reserved and not refused
	held  int // recipients held in Redis (the first came with Admit)
	done  atomic.Bool
}

func (t *ticket) Rcpt(ctx context.Context) (bool, *quota.Denial) {
	if t.l.RecipientsPerMessage > 0 && t.rcpts >= t.l.RecipientsPerMessage {
		return true, nil
	}
	if t.rcpts < t.held {
		t.rcpts++
		return false, nil
	}
	c := t.b.c
	cctx, cancel := c.call(ctx)
	r, err := rcptScript.Exec(cctx, c.r, keys(t.acct)[:3],
		[]string{t.id, strconv.FormatInt(t.b.ttl.Milliseconds(), 10), strconv.Itoa(t.l.RecipientsPerDay)}).ToArray()
	cancel()
	if err != nil {
		c.failed(err)
		// The message was admitted in Redis; without Redis its further
		// recipients wait rather than risk the daily budget.
		return false, waitDenial(localAfter)
	}
	if kind, _ := r[0].ToString(); kind == "deny" {
		secs, _ := r[1].AsInt64()
		in := max(time.Duration(secs)*time.Second, time.Second)
		return false, &quota.Denial{Limit: "daily recipient budget", ResetIn: in, Until: time.Now().Add(in)}
	}
	t.rcpts++
	t.held++
	return false, nil
}

// RcptRefused gives back a recipient; Redis frees it with the ticket, at
// Done (until then it errs towards sending less).
func (t *ticket) RcptRefused() {
	if t.rcpts > 0 {
		t.rcpts--
	}
}

func (t *ticket) Done(accepted bool) {
	if t == nil || t.done.Swap(true) {
		return
	}
	b := t.b
	if accepted {
		b.record(t.acct, t.rcpts)
	}
	b.mu.Lock()
	b.jobs[t.acct] = append(b.jobs[t.acct], finished{ticket: t.id, accepted: accepted, rcpts: t.rcpts, at: time.Now()})
	b.mu.Unlock()
}

// record counts an accepted message in this proxy's mirror.
func (b *Budget) record(acct string, rcpts int) {
	tk, _ := b.mirror.Admit(context.Background(), acct, quota.Limits{})
	for range rcpts {
		tk.Rcpt(context.Background())
	}
	tk.Done(true)
}

// localTicket is a reservation on the local share; an accepted message
// is owed to Redis.
type localTicket struct {
	quota.Ticket
	b    *Budget
	acct string
	n    int
	done atomic.Bool
}

func (t *localTicket) Rcpt(ctx context.Context) (bool, *quota.Denial) {
	tooMany, d := t.Ticket.Rcpt(ctx)
	if !tooMany && d == nil {
		t.n++
	}
	return tooMany, d
}

func (t *localTicket) RcptRefused() {
	t.Ticket.RcptRefused()
	if t.n > 0 {
		t.n--
	}
}

func (t *localTicket) Done(accepted bool) {
	if t.done.Swap(true) {
		return
	}
	t.Ticket.Done(accepted)
	if !accepted {
		return
	}
	t.b.record(t.acct, t.n)
	t.b.mu.Lock()
	o := t.b.owed[t.acct]
	o[0]++
	o[1] += t.n
	t.b.owed[t.acct] = o
	t.b.mu.Unlock()
}

// CoolDown implements quota.Budget: in Redis for all proxies, and in the
// local book for the time Redis does not answer.
func (b *Budget) CoolDown(acct, cause string, d time.Duration) {
	if d <= 0 {
		return
	}
	b.local.CoolDown(acct, cause, d)
	ctx, cancel := b.c.call(context.Background())
	defer cancel()
	b.c.failed(coolScript.Exec(ctx, b.c.r, []string{Key(acct, "cool")}, []string{strconv.FormatInt(d.Milliseconds(), 10), cause}).Error())
}

// Clear implements quota.Budget.
func (b *Budget) Clear(acct string) {
	b.local.Clear(acct)
	ctx, cancel := b.c.call(context.Background())
	defer cancel()
	b.c.failed(b.c.r.Do(ctx, b.c.r.B().Del().Key(Key(acct, "cool")).Build()).Error())
}

// Status implements quota.Budget: the cluster's use, or the local
// book's while Redis does not answer.
func (b *Budget) Status(acct string, l quota.Limits) quota.Status {
	ctx, cancel := b.c.call(context.Background())
	defer cancel()
	r, err := statusScript.Exec(ctx, b.c.r, []string{Key(acct, "b"), Key(acct, "cool")}, nil).ToArray()
	if err != nil || len(r) != 6 {
		b.c.failed(err)
		return b.local.Status(acct, l)
	}
	var st quota.Status
	now := time.Now()
	for i, lim := range []int{l.MessagesPerMinute, l.MessagesPerHour, l.MessagesPerDay, l.RecipientsPerDay} {
		if lim == 0 {
			continue
		}
		used, _ := r[i].AsInt64()
		st.Budgets = append(st.Budgets, quota.Use{Name: statusNames[i], Used: int(used), Limit: lim})
		if int(used)*5 >= lim*4 {
			st.NearOrAtLimit = true
		}
	}
	if ms, _ := r[4].AsInt64(); ms > 0 {
		cause, _ := r[5].ToString()
		st.CoolingUntil, st.CoolingCause, st.NearOrAtLimit = now.Add(time.Duration(ms)*time.Millisecond), cause, true
	}
	return st
}

var statusNames = [4]string{"messages_per_minute", "messages_per_hour", "messages_per_day", "recipients_per_day"}

// run flushes finished tickets that waited flushEvery, pays what is owed
// once Redis answers, and re-seeds the counts after Redis restarted.
func (b *Budget) run(ctx context.Context) {
	defer b.wg.Done()
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	emptied := b.c.emptied.Load()
	for {
		select {
		case <-ctx.Done():
			b.flush(context.Background(), 0)
			return
		case <-t.C:
		}
		if !b.c.Up() {
			continue
		}
		if r := b.c.emptied.Load(); r != emptied && b.reseed(ctx) {
			emptied = r // else tried again at the next tick
		}
		b.flush(ctx, flushEvery)
		b.payOwed(ctx)
	}
}

// flush sends the finished tickets older than age, one script per
// account, pipelined.
func (b *Budget) flush(ctx context.Context, age time.Duration) {
	cut := time.Now().Add(-age)
	b.mu.Lock()
	var accts []string
	for a, jobs := range b.jobs {
		if len(jobs) > 0 && !jobs[0].at.After(cut) {
			accts = append(accts, a)
		}
	}
	b.mu.Unlock()
	if len(accts) == 0 {
		return
	}
	execs := make([]rueidis.LuaExec, 0, len(accts))
	taken := make([][]finished, 0, len(accts))
	for _, a := range accts {
		jobs, args := b.take(a)
		taken = append(taken, jobs)
		execs = append(execs, b.doneExec(a, args))
	}
	cctx, cancel := context.WithTimeout(ctx, b.c.timeout*2)
	res := doneScript.ExecMulti(cctx, b.c.r, execs...)
	cancel()
	for i, r := range res {
		if !b.doneReply(accts[i], r) {
			b.giveBack(accts[i], taken[i])
		}
	}
}

// doneExec is doneScript for acct's finished tickets args.
func (b *Budget) doneExec(acct string, args []string) rueidis.LuaExec {
	ks := keys(acct)[:3]
	known, cand := b.c.epochArgs()
	if !b.c.cfg.RedisCluster {
		ks = append(ks, epochKey, graceKey)
	}
	return rueidis.LuaExec{Keys: ks, Args: append([]string{known, cand}, args...)}
}

// doneReply reads doneScript's reply; false when nothing was counted.
func (b *Budget) doneReply(acct string, r rueidis.RedisResult) bool {
	u, err := r.ToArray()
	if err != nil {
		b.c.failed(err)
		return false
	}
	if len(u) == 2 {
		if kind, _ := u[0].ToString(); kind == "grace" {
			e, _ := u[1].ToString()
			b.c.sawEpoch(e)
			return false
		}
	}
	b.saw(acct, u)
	return true
}

// payOwed adds to Redis the messages accepted on the local share.
func (b *Budget) payOwed(ctx context.Context) {
	b.mu.Lock()
	owed := b.owed
	b.owed = map[string][2]int{}
	b.mu.Unlock()
	for a, o := range owed {
		if o[0] == 0 {
			continue
		}
		args := []string{}
		for i := range o[0] {
			rc := 0
			if i == 0 {
				rc = o[1]
			}
			args = append(args, "-", "1", strconv.Itoa(rc))
		}
		cctx, cancel := b.c.call(ctx)
		ex := b.doneExec(a, args)
		ok := b.doneReply(a, doneScript.Exec(cctx, b.c.r, ex.Keys, ex.Args))
		cancel()
		if !ok {
			b.mu.Lock()
			p := b.owed[a]
			b.owed[a] = [2]int{p[0] + o[0], p[1] + o[1]}
			b.mu.Unlock()
			continue
		}
		b.c.m.reconciled.Add(float64(o[0]))
	}
}

// reseed adds this proxy's own counts (the mirror) to a Redis that
// restarted: together the proxies' mirrors are what Redis lost. What was
// owed is in the mirror already. It reports whether every account's
// counts went in.
func (b *Budget) reseed(ctx context.Context) bool {
	// What was owed or queued is in the mirror already; the
	// reservations of the queued tickets went with Redis's data.
	b.mu.Lock()
	b.owed = map[string][2]int{}
	b.jobs = map[string][]finished{}
	b.mu.Unlock()
	var buf bytes.Buffer
	if err := b.mirror.Save(&buf); err != nil {
		return true // nothing to add
	}
	type window struct {
		Counts []int32 `json:"counts"`
		Head   int64   `json:"head"`
	}
	var f struct {
		Accounts map[string]map[string]json.RawMessage `json:"accounts"`
	}
	if err := json.Unmarshal(buf.Bytes(), &f); err != nil {
		b.c.log.Error("re-seed budgets: read this proxy's counts", "err", err)
		return true
	}
	names := map[string]string{"msg_minute": "m", "msg_hour": "h", "msg_day": "d", "rcpt_day": "r"}
	execs := []rueidis.LuaExec{}
	for a, ws := range f.Accounts {
		var args []string
		for jn, raw := range ws {
			short, ok := names[jn]
			var w window
			if !ok || json.Unmarshal(raw, &w) != nil || len(w.Counts) == 0 {
				continue
			}
			n := int64(len(w.Counts))
			for i := w.Head - n + 1; i <= w.Head; i++ {
				if c := w.Counts[((i%n)+n)%n]; c > 0 {
					args = append(args, short, strconv.FormatInt(i, 10), strconv.Itoa(int(c)))
				}
			}
		}
		if len(args) > 0 {
			execs = append(execs, rueidis.LuaExec{Keys: []string{Key(a, "b")}, Args: args})
		}
	}
	if len(execs) == 0 {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, 10*b.c.timeout)
	defer cancel()
	// Each account at most once: one whose script failed is not sent
	// again with the others (it would count twice).
	var again []rueidis.LuaExec
	for i, r := range seedScript.ExecMulti(cctx, b.c.r, execs...) {
		if err := r.Error(); err != nil {
			b.c.failed(err)
			again = append(again, execs[i])
		}
	}
	for _, ex := range again {
		if err := seedScript.Exec(cctx, b.c.r, ex.Keys, ex.Args).Error(); err != nil {
			b.c.log.Warn("re-seed budgets: an account's counts not added back", "key", ex.Keys[0], "err", err)
		}
	}
	b.c.log.Info("re-seeded budget counts after redis lost its data", "accounts", len(execs))
	return true
}

func boolArg(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

package clustertoken

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
)

// Shared is the token records of all accounts in one Redis.
type Shared struct {
	r       rueidis.Client
	node    string
	timeout time.Duration
}

var _ token.Shared = (*Shared)(nil)

// New uses the cluster client's connection, node name and timeout.
func New(c *cluster.Client) *Shared {
	return &Shared{r: c.Redis(), node: c.Node(), timeout: c.Timeout()}
}

// Key names of one account's token state; every one carries the
// account's hash tag (cluster.Key).
func recordKey(account string) string { return cluster.Key(account, "token") }
func lockKey(account string) string   { return cluster.Key(account, "token:lock") }
func fenceKey(account string) string  { return cluster.Key(account, "token:fence") }

func (s *Shared) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Load implements token.Shared.
func (s *Shared) Load(ctx context.Context, account string) (token.Committed, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	m, err := s.r.Do(ctx, s.r.B().Hgetall().Key(recordKey(account)).Build()).AsStrMap()
	if err != nil {
		return token.Committed{}, fmt.Errorf("load shared token of %s: %w", account, err)
	}
	c, err := decode(m)
	if err != nil {
		return token.Committed{}, fmt.Errorf("load shared token of %s: %w", account, err)
	}
	return c, nil
}

// lockScript takes the lock with the next fencing number, or returns 0.
var lockScript = rueidis.NewLuaScript(`
local f = redis.call('INCR', KEYS[2])
if redis.call('SET', KEYS[1], ARGV[1] .. '/' .. f, 'NX', 'PX', ARGV[2]) then return f end
return 0`)

// unlockScript deletes the lock only if it still holds our value.
var unlockScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Lock implements token.Shared.
func (s *Shared) Lock(ctx context.Context, account string, ttl time.Duration) (func(), bool, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	keys := []string{lockKey(account), fenceKey(account)}
	f, err := lockScript.Exec(cctx, s.r, keys, []string{s.node, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)}).AsInt64()
	if err != nil {
		return nil, false, fmt.Errorf("lock shared token of %s: %w", account, err)
	}
	if f == 0 {
		return func() {}, false, nil
	}
	val := s.node + "/" + strconv.FormatInt(f, 10)
	return func() {
		// The lock's own expiry covers a failure here.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		_ = unlockScript.Exec(uctx, s.r, []string{lockKey(account)}, []string{val}).Error()
	}, true, nil
}

// commitScript: ARGV[1] is the expected version; the rest are field and
// value pairs. The record is replaced whole as version ARGV[1]+1.
var commitScript = rueidis.NewLuaScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if cur ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', cur + 1, unpack(ARGV, 2))
return 1`)

// Commit implements token.Shared.
func (s *Shared) Commit(ctx context.Context, account string, base int64, c token.Committed) (bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	args := append([]string{strconv.FormatInt(base, 10)}, encode(c)...)
	n, err := commitScript.Exec(ctx, s.r, []string{recordKey(account)}, args).AsInt64()
	if err != nil {
		return false, fmt.Errorf("commit shared token of %s: %w", account, err)
	}
	return n == 1, nil
}

// seedScript: ARGV[1] credential, ARGV[2] refresh version, ARGV[3] the
// version the seeder last saw; the rest are field and value pairs. It
// writes when the record is missing, or is of the same credential with an
// older refresh token, as a version above both.
var seedScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'cred') ~= ARGV[1] then return 0 end
  if tonumber(redis.call('HGET', KEYS[1], 'rtv') or '0') >= tonumber(ARGV[2]) then return 0 end
end
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', math.max(cur, tonumber(ARGV[3])) + 1, unpack(ARGV, 4))
return 1`)

// Seed implements token.Shared.
func (s *Shared) Seed(ctx context.Context, account string, c token.Committed) (bool, error) {
	if c.RefreshVersion <= 0 {
		return false, errors.New("seed: no refresh token version")
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	args := append([]string{c.Credential, strconv.FormatInt(c.RefreshVersion, 10), strconv.FormatInt(c.Version, 10)}, encode(c)...)
	n, err := seedScript.Exec(ctx, s.r, []string{recordKey(account)}, args).AsInt64()
	if err != nil {
		return false, fmt.Errorf("seed shared token of %s: %w", account, err)
	}
	return n == 1, nil
}

// encode lists a record's fields (without the version) as HSET pairs.
// Times are Unix milliseconds.
func encode(c token.Committed) []string {
	ms := func(t time.Time) string {
		if t.IsZero() {
			return "0"
		}
		return strconv.FormatInt(t.UnixMilli(), 10)
	}
	return []string{
		"cred", c.Credential, "grant", c.Grant,
		"rt", c.RefreshToken.Reveal(), "rtv", strconv.FormatInt(c.RefreshVersion, 10),
		"at", c.AccessToken.Reveal(), "exp", ms(c.Expiry), "obt", ms(c.Obtained),
		"st", c.State, "err", c.LastError,
	}
}

// decode reads a record; an empty map is no record (Version 0).
func decode(m map[string]string) (token.Committed, error) {
	if len(m) == 0 {
		return token.Committed{}, nil
	}
	num := func(k string) (int64, error) {
		v, ok := m[k]
		if !ok || v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("field %s is not a number", k) // never the value: it may be a token
		}
		return n, nil
	}
	var c token.Committed
	var err error
	var exp, obt int64
	for k, p := range map[string]*int64{"v": &c.Version, "rtv": &c.RefreshVersion, "exp": &exp, "obt": &obt} {
		if *p, err = num(k); err != nil {
			return token.Committed{}, err
		}
	}
	at := func(ms int64) time.Time {
		if ms == 0 {
			return time.Time{}
		}
		return time.UnixMilli(ms)
	}
	c.Expiry, c.Obtained = at(exp), at(obt)
	c.Credential, c.Grant, c.State, c.LastError = m["cred"], m["grant"], m["st"], m["err"]
	c.RefreshToken, c.AccessToken = secret.New(m["rt"]), secret.New(m["at"])
	return c, nil
}

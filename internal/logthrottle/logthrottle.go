package logthrottle

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Key names one kind of event. Events of one key are aggregated.
type Key struct {
	// Account is the account_id the event concerns; empty for events of
	// no account (a connection refused before AUTH).
	Account string
	// Reason is a short, stable name of the event's kind ("busy",
	// "connection_limit"); the summary line carries it as "reason".
	Reason string
}

// Options configure a Throttle. Zero values take the defaults noted.
type Options struct {
	// Logger receives the summary lines; nil discards them. (The full
	// lines go to the logger passed with each event.)
	Logger *slog.Logger
	// Interval is the least time between two lines of one key, and how
	// long a key stays quiet before its next event is logged in full
	// again; default 5s.
	Interval time.Duration
	// MaxKeys bounds the keys tracked, a bound on memory; default 10000.
	// Keys come from configured accounts and a fixed set of reasons, so
	// only thousands of accounts failing at once come near it. While that
	// many keys are in use (none quiet for an Interval), events of new
	// keys are counted under one catch-all key (Reason "other").
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultInterval = 5 * time.Second
	DefaultMaxKeys  = 10000
)

// overflow is the catch-all key of events whose key found the table full.
var overflow = Key{Reason: "other"}

// overflowMsg is the catch-all key's summary message.
const overflowMsg = "log events of other kinds (too many kinds to tell apart)"

// Throttle aggregates repeated log events. Safe for concurrent use.
type Throttle struct {
	log      *slog.Logger
	interval time.Duration
	maxKeys  int
	now      func() time.Time

	mu    sync.Mutex // guards the fields below
	keys  map[Key]*entry
	swept time.Time // when a full table was last searched for quiet keys
}

// entry is one key's state.
type entry struct {
	level slog.Level
	msg   string    // of the first event: the summary's message
	lined time.Time // when this key's last line (full or summary) was written
	n     int       // events counted since then
	first time.Time // of those n events
	last  time.Time
}

// summary is one line owed: n events of key since first.
type summary struct {
	key         Key
	level       slog.Level
	msg         string
	n           int
	first, last time.Time
}

// New returns a Throttle.
func New(o Options) *Throttle {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Throttle{log: o.Logger, interval: o.Interval, maxKeys: o.MaxKeys, now: o.Now, keys: make(map[Key]*entry)}
}

// Warn is Log at slog.LevelWarn.
func (t *Throttle) Warn(log *slog.Logger, key Key, msg string, args ...any) {
	t.Log(log, slog.LevelWarn, key, msg, args...)
}

// Error is Log at slog.LevelError.
func (t *Throttle) Error(log *slog.Logger, key Key, msg string, args ...any) {
	t.Log(log, slog.LevelError, key, msg, args...)
}

// Log writes msg with args to log, as log.Log does, when it is the first
// event of key or the first after key was quiet for an Interval; otherwise
// it counts the event, and writes the summary of the counted ones when the
// key's last line is an Interval old.
func (t *Throttle) Log(log *slog.Logger, level slog.Level, key Key, msg string, args ...any) {
	now := t.now()
	t.mu.Lock()
	full, owed := t.note(now, level, key, msg)
	t.mu.Unlock()
	t.write(owed) // first: they are of earlier events
	if full {
		log.Log(context.Background(), level, msg, args...)
	}
}

// Flush writes the summaries due (an Interval after their key's last
// line) and forgets the keys quiet for an Interval. The owner calls it
// about every Interval, so that a burst that stopped is still summed up.
func (t *Throttle) Flush() { t.flush(false) }

// FlushAll writes every summary still owed, due or not: at shutdown.
func (t *Throttle) FlushAll() { t.flush(true) }

func (t *Throttle) flush(all bool) {
	now := t.now()
	t.mu.Lock()
	owed := t.sweep(now, nil, all)
	t.mu.Unlock()
	t.write(owed)
}

// note records one event: full means log it in full; owed are the
// summaries to write. Called with mu held.
func (t *Throttle) note(now time.Time, level slog.Level, key Key, msg string) (full bool, owed []summary) {
	e := t.keys[key]
	if e == nil && len(t.keys) >= t.maxKeys {
		if now.Sub(t.swept) >= t.interval {
			// Searching a full table costs a pass over it: at most once
			// an Interval, however many new keys arrive.
			t.swept = now
			owed = t.sweep(now, owed, false)
		}
		if len(t.keys) >= t.maxKeys {
			key, msg = overflow, overflowMsg
			e = t.keys[key] // may take the table one over MaxKeys
		}
	}
	if e == nil {
		t.keys[key] = &entry{level: level, msg: msg, lined: now}
		return true, owed
	}
	if now.Sub(e.quietSince()) >= t.interval {
		// A new episode: the last one's count, if any, is summed up,
		// and this event is shown in full.
		if e.n > 0 {
			owed = append(owed, e.take(key, now))
		}
		e.lined = now
		return true, owed
	}
	e.n++
	if e.n == 1 {
		e.first = now
	}
	e.last = now
	if now.Sub(e.lined) >= t.interval {
		owed = append(owed, e.take(key, now))
	}
	return false, owed
}

// sweep appends to owed the summaries due (all of them when all is set)
// and forgets the keys quiet for an Interval. Called with mu held.
func (t *Throttle) sweep(now time.Time, owed []summary, all bool) []summary {
	for k, e := range t.keys {
		switch {
		case e.n > 0 && (all || now.Sub(e.lined) >= t.interval):
			owed = append(owed, e.take(k, now))
		case e.n == 0 && now.Sub(e.quietSince()) >= t.interval:
			delete(t.keys, k)
		}
	}
	return owed
}

// quietSince is when e's last event was (or its last line, with none
// counted since).
func (e *entry) quietSince() time.Time {
	if e.n > 0 {
		return e.last
	}
	return e.lined
}

// take returns the summary of e's counted events and starts a new count.
func (e *entry) take(k Key, now time.Time) summary {
	s := summary{key: k, level: e.level, msg: e.msg, n: e.n, first: e.first, last: e.last}
	e.n, e.lined = 0, now
	return s
}

// write writes the summary lines, outside mu.
func (t *Throttle) write(owed []summary) {
	for _, s := range owed {
		attrs := make([]slog.Attr, 0, 5)
		if s.key.Account != "" {
			attrs = append(attrs, slog.String("account", s.key.Account))
		}
		attrs = append(attrs, slog.String("reason", s.key.Reason), slog.Int("repeated", s.n),
			slog.Time("first", s.first), slog.Time("last", s.last))
		t.log.LogAttrs(context.Background(), s.level, s.msg, attrs...)
	}
}

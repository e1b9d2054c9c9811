package account

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/token"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/upstream"
)

// Conn is an authenticated upstream session, as the relay and the probe
// use it. *upstream.Client implements it; tests use fakes.
type Conn interface {
	// Batch sends cmds pipelined and returns the replies read, in order.
	Batch(ctx context.Context, cmds []upstream.Cmd) ([]reply.Reply, error)
	// Body streams a message after a 354 and returns the final reply.
	Body(ctx context.Context, r io.Reader) (reply.Reply, error)
	// Chunking reports that the session can take the body with BDAT
	// (CHUNKING and PIPELINING offered), and BodyChunked sends it so,
	// without a DATA command: one round trip for the body.
	Chunking() bool
	BodyChunked(ctx context.Context, r io.Reader) (reply.Reply, error)
	// Reset ends a transaction left half-way (RSET).
	Reset(ctx context.Context) error
	// Extension reports an EHLO keyword and its parameter.
	Extension(name string) (param string, ok bool)
	// Broken reports that the session may not be used again.
	Broken() bool
	// Quit closes politely; Close at once.
	Quit(ctx context.Context) error
	Close() error
}

// Lease is one session lent to one transaction. It goes back with
// Release (healthy, reusable) or Discard (broken), exactly once.
// *pool.Lease[Conn] implements it.
type Lease interface {
	Session() Conn
	// Fresh reports a session opened for this lease rather than reused:
	// a failure on it is not a stale pooled session's.
	Fresh() bool
	// Delivered counts one message carried (max_messages_per_connection).
	Delivered()
	Release()
	Discard()
}

// Sessions lends an account's authenticated upstream sessions: the local
// pool (NewSessions), or in cluster mode a lease that also holds a slot of
// the account's cluster-wide cap. Errors from Lease and LeaseNew are
// *OpenError.
type Sessions interface {
	// Lease lends an idle session or opens one, waiting up to wait while
	// the account is at its cap.
	Lease(ctx context.Context, wait time.Duration) (Lease, error)
	// LeaseNew opens a new session after a pooled one was found dead,
	// closing the idle ones, which have likely met the same fate.
	LeaseNew(ctx context.Context, wait time.Duration) (Lease, error)
	// Drain closes the sessions open now (idle at once, leased on their
	// return) and goes on lending new ones; reason is logged.
	Drain(reason string)
	// Sweep closes idle sessions past their timeouts.
	Sweep()
	// Close closes idle sessions, refuses new leases and closes leased
	// ones on their return. It waits for the QUITs it started.
	Close()
	Stats() SessionStats
}

// SessionStats count an account's upstream sessions.
type SessionStats struct {
	Open   int64 // open now, busy and idle
	Busy   int64 // leased now
	Opened int64 // opened ever (by this Sessions)
	Cap    int   // effective cap: lowered for a while after a provider's concurrency refusal
}

// Runtime is the part of an account's state made from the configuration
// that upstream sessions depend on; a reload replaces it when that
// configuration changes. Both parts are nil in dry-run.
type Runtime struct {
	Tokens   *token.Source
	Sessions Sessions
}

// LastReply is the last final reply of an upstream transaction.
type LastReply struct {
	Text string
	At   time.Time
}

// Counters are an account's outcome counts. They only grow, across
// reloads and edits of the account.
type Counters struct {
	Sent      atomic.Int64 // final reply 2xx
	Failed    atomic.Int64 // final reply 4xx/5xx, or refused before DATA
	Ambiguous atomic.Int64 // final reply lost after the dot was sent
	lastReply atomic.Pointer[LastReply]
	recent    replyRing
}

// SetLastReply records the last upstream final reply, also in the ring
// of recent replies (Replies).
func (c *Counters) SetLastReply(text string, at time.Time) {
	lr := &LastReply{Text: text, At: at}
	c.lastReply.Store(lr)
	c.recent.add(lr)
}

// NoteReply records an upstream reply that ended no message (a refusal
// at MAIL or RCPT that cooled the account down) in the ring of recent
// replies only.
func (c *Counters) NoteReply(text string, at time.Time) { c.recent.add(&LastReply{Text: text, At: at}) }

// Replies returns the last upstream final replies, newest first (at most
// RecentReplies).
func (c *Counters) Replies() []LastReply { return c.recent.list() }

// LastReply returns the last upstream final reply, if any.
func (c *Counters) LastReply() (LastReply, bool) {
	if p := c.lastReply.Load(); p != nil {
		return *p, true
	}
	return LastReply{}, false
}

// State is an account's runtime state, kept by account_id in the Registry
// for as long as the account exists, across reloads: its counters, its
// messages in flight and its Runtime (token source, session lease). Safe
// for concurrent use.
type State struct {
	Counters
	id       string
	inflight atomic.Int64
	rt       atomic.Pointer[Runtime]
	// openedBefore is the sessions opened by the Sessions that reloads
	// replaced, so that SessionStats().Opened never falls.
	openedBefore atomic.Int64
}

// NewState returns the state of account id with runtime rt (tests; the
// Registry makes its own).
func NewState(id string, rt Runtime) *State {
	s := &State{id: id}
	s.rt.Store(&rt)
	return s
}

// ID is the account_id.
func (s *State) ID() string { return s.id }

// Tokens is the account's token source; nil in dry-run.
func (s *State) Tokens() *token.Source { return s.rt.Load().Tokens }

// Sessions is the account's session lease; nil in dry-run.
func (s *State) Sessions() Sessions { return s.rt.Load().Sessions }

// SessionStats are the current Sessions' counts, with Opened counting the
// sessions of the Sessions replaced before.
func (s *State) SessionStats() SessionStats {
	ss := s.Sessions()
	if ss == nil {
		return SessionStats{Opened: s.openedBefore.Load()}
	}
	st := ss.Stats()
	st.Opened += s.openedBefore.Load()
	return st
}

// DrainSessions closes the sessions open now (token.Config.OnBlocked: the
// account was revoked or disabled; sessions authenticated before must not
// go on sending).
func (s *State) DrainSessions(reason string) {
	if ss := s.Sessions(); ss != nil {
		ss.Drain(reason)
	}
}

// swap installs rt and returns the runtime it replaces.
func (s *State) swap(rt Runtime) Runtime {
	old := *s.rt.Swap(&rt)
	if old.Sessions != nil && old.Sessions != rt.Sessions {
		s.openedBefore.Add(old.Sessions.Stats().Opened)
	}
	return old
}

// Inflight returns the messages in flight.
func (s *State) Inflight() int64 { return s.inflight.Load() }

// acquire counts one more message in flight unless that makes more than
// limit (0: no cap).
func (s *State) acquire(limit int) bool {
	if n := s.inflight.Add(1); limit > 0 && n > int64(limit) {
		s.inflight.Add(-1)
		return false
	}
	return true
}

// Done ends one message started with Account.Acquire.
func (s *State) Done() { s.inflight.Add(-1) }

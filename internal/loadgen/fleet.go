package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// FleetOptions configure a Fleet.
type FleetOptions struct {
	// Addr is the server's host:port.
	Addr string
	// Connections is the number of client connections; 0 means 1.
	Connections int
	// Timeout bounds each command's write and reply; 0 means 30s.
	Timeout time.Duration
	// TLS, when set, makes each connection STARTTLS before Login.
	TLS *tls.Config
	// NoPipelining sends one command at a time even when the server
	// advertises PIPELINING.
	NoPipelining bool
	// Login authenticates connection i (0-based) and returns the sender
	// address its messages use. It is called again after a reconnect.
	Login func(c *Client, i int) (from string, err error)
}

// Fleet is a set of connected, authenticated client connections that Run
// drives. Open it, Run it (once or more, never concurrently), Close it.
type Fleet struct {
	opts    FleetOptions
	members []*member
}

// member is one connection of the fleet; only the goroutine running it
// touches it.
type member struct {
	i    int
	c    *Client // nil after a connection error until reconnected
	from string
}

// Open dials every connection (a few at a time), says EHLO, STARTTLS when
// asked, and logs in. Any failure closes what was opened and is returned.
func Open(ctx context.Context, o FleetOptions) (*Fleet, error) {
	if o.Connections <= 0 {
		o.Connections = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Login == nil {
		return nil, errors.New("loadgen: FleetOptions.Login is required")
	}
	f := &Fleet{opts: o, members: make([]*member, o.Connections)}
	for i := range f.members {
		f.members[i] = &member{i: i}
	}
	// Connect in parallel, but not all at once: a burst of thousands of
	// handshakes would measure the listener's backlog, not the server.
	const parallel = 32
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	errs := make([]error, len(f.members))
	for i, m := range f.members {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f.connect(ctx, m)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// connect (re)opens member m's connection.
func (f *Fleet) connect(ctx context.Context, m *member) error {
	c, err := Dial(ctx, f.opts.Addr, f.opts.Timeout)
	if err != nil {
		return fmt.Errorf("connection %d: %w", m.i, err)
	}
	// Dial honours ctx only while connecting; closing the socket on
	// cancel ends the handshake and login below too.
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	defer stop()
	if f.opts.TLS != nil {
		if err := c.StartTLS(f.opts.TLS); err != nil {
			c.Close()
			return fmt.Errorf("connection %d: %w", m.i, err)
		}
	}
	if f.opts.NoPipelining {
		c.DisablePipelining()
	}
	from, err := f.opts.Login(c, m.i)
	if err != nil {
		c.Close()
		return fmt.Errorf("connection %d: login: %w", m.i, err)
	}
	m.c, m.from = c, from
	return nil
}

// quitTimeout bounds the QUIT of each connection in Close.
const quitTimeout = 5 * time.Second

// Close sends QUIT on every open connection, in parallel, waits up to
// quitTimeout for each reply, and closes it.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	for _, m := range f.members {
		if m.c == nil {
			continue
		}
		c := m.c
		m.c = nil
		c.timeout = min(c.timeout, quitTimeout)
		wg.Go(func() { _ = c.Quit() })
	}
	wg.Wait()
}

// Load is what Run sends.
type Load struct {
	Rcpts []string // recipients of every message
	Body  []byte   // message content, CRLF lines, not dot-stuffed
	// Duration stops starting new messages after this long; messages in
	// flight finish. 0 means no time limit.
	Duration time.Duration
	// Messages caps the messages attempted over all connections; 0 means
	// no cap. Duration or Messages must be set.
	Messages int
	// RefusedPause is how long a connection waits after a refused message
	// before the next, as a real sender backs off; 0 means 10ms.
	RefusedPause time.Duration
}

// Summary is what Run observed.
type Summary struct {
	Attempted int64         // transactions started
	OK        int64         // final reply 250
	Refused   int64         // any other reply to MAIL, RCPT, DATA or the body
	Errors    int64         // connection errors; the connection is reopened
	Elapsed   time.Duration // from the first message to the last reply
	// Latencies are the durations of the accepted messages, from the first
	// byte of MAIL written to the final 250 read, in ascending order.
	Latencies []time.Duration
	// FirstRefusal and FirstError are samples for diagnosis ("" if none).
	FirstRefusal string
	FirstError   string
}

// Percentile returns the p-th percentile (0 < p ≤ 100, nearest rank) of
// the accepted messages' latencies; 0 when there are none.
func (r *Summary) Percentile(p float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(n))) - 1
	return r.Latencies[min(max(k, 0), n-1)]
}

// Run drives every connection until the load's duration passes, its
// message cap is reached, or ctx ends. A connection that fails is reopened
// once per failure; a connection that cannot be reopened stops.
func (f *Fleet) Run(ctx context.Context, l Load) (Summary, error) {
	if l.Duration <= 0 && l.Messages <= 0 {
		return Summary{}, errors.New("loadgen: Load needs Duration or Messages")
	}
	if l.RefusedPause <= 0 {
		l.RefusedPause = 10 * time.Millisecond
	}
	var (
		res   Summary
		next  atomic.Int64
		mu    sync.Mutex // guards res's samples and the merged latencies
		wg    sync.WaitGroup
		start = time.Now()
	)
	var deadline time.Time
	if l.Duration > 0 {
		deadline = start.Add(l.Duration)
	}
	var ok, refused, errs atomic.Int64
	for _, m := range f.members {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1024)
			note := func(dst *string, s string) {
				mu.Lock()
				if *dst == "" {
					*dst = s
				}
				mu.Unlock()
			}
			// Closing the socket when ctx ends interrupts a blocked Send;
			// one watch per connection, not per message.
			var watched *Client
			stop := func() bool { return false }
			defer func() { stop() }()
			for ctx.Err() == nil {
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					break
				}
				if l.Messages > 0 && next.Add(1) > int64(l.Messages) {
					break
				}
				if m.c == nil {
					if err := f.connect(ctx, m); err != nil {
						errs.Add(1)
						note(&res.FirstError, err.Error())
						break
					}
				}
				c := m.c
				if c != watched {
					stop()
					stop, watched = context.AfterFunc(ctx, func() { c.raw.Close() }), c
				}
				t0 := time.Now()
				r, err := c.Send(m.from, l.Rcpts, l.Body)
				d := time.Since(t0)
				switch {
				case err != nil:
					errs.Add(1)
					if ctx.Err() == nil {
						note(&res.FirstError, fmt.Sprintf("connection %d: %v", m.i, err))
					}
					c.Close()
					m.c = nil
				case r.OK():
					ok.Add(1)
					lat = append(lat, d)
				default:
					refused.Add(1)
					note(&res.FirstRefusal, refusal(r))
					sleep(ctx, l.RefusedPause)
				}
			}
			mu.Lock()
			res.Latencies = append(res.Latencies, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.OK, res.Refused, res.Errors = ok.Load(), refused.Load(), errs.Load()
	res.Attempted = res.OK + res.Refused + res.Errors
	slices.Sort(res.Latencies)
	return res, ctx.Err()
}

// refusal describes the first reply of a transaction that was not a success.
func refusal(r Result) string {
	switch {
	case r.Mail.Code != 250:
		return "MAIL: " + r.Mail.String()
	case len(r.Rcpts) > 0 && r.Rcpts[0].Code >= 400:
		return "RCPT: " + r.Rcpts[0].String()
	case r.Data.Code != 354:
		return "DATA: " + r.Data.String()
	}
	return "after body: " + r.Final.String()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

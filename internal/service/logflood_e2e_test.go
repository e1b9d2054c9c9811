package service_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// TestOverload_repeatedFailuresDoNotFloodTheLog: failures an overloaded
// or attacked proxy repeats at a high rate (all upstream sessions busy,
// the connection caps, an upstream that drops every session) write the
// first occurrence and then a summary with the count, not a line each
// (penetration test item 9: 330,000 refused transactions wrote 48 MB); the
// metrics count every one, and the log's counts (one per full line, N per
// summary) add up to the same. A transaction refused before it reached
// the upstream writes no "message" line either.
func TestOverload_repeatedFailuresDoNotFloodTheLog(t *testing.T) {
	t.Parallel()
	const workers = 4
	cases := []struct {
		name   string
		edit   func(cfg map[string]any, accts []map[string]any)
		hold   func(t *testing.T, e *env) []*conn // takes what the flood then finds full
		refuse func(t *testing.T, e *env, n int)
		n      int    // failures in all
		msg    string // the log line each refusal wrote
		metric string // the series that counts them
	}{{
		name: "upstream sessions busy",
		edit: func(cfg map[string]any, accts []map[string]any) {
			cfg["global"].(map[string]any)["timeouts"] = map[string]any{"connection_acquire_timeout": 0.005}
			accts[0]["connection_settings"] = map[string]any{"max_connections_per_account": 2}
			accts[0]["max_concurrent_messages"] = 100
		},
		hold: func(t *testing.T, e *env) []*conn {
			var held []*conn
			for range 2 {
				c := e.dial(t)
				c.authPlain(userA, password, "235")
				c.cmd("MAIL FROM:<"+userA+">", "250") // leases a session and keeps it
				held = append(held, c)
			}
			return held
		},
		refuse: func(t *testing.T, e *env, n int) {
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			for range n {
				c.cmd("MAIL FROM:<"+userA+">", "451 4.7.0 "+userA+": all upstream sessions busy")
				c.cmd("RSET", "250")
			}
		},
		n:      400,
		msg:    "no upstream session free",
		metric: `errors_total{error_type="busy"}`,
	}, {
		name: "connection cap",
		edit: func(cfg map[string]any, _ []map[string]any) {
			cfg["global"].(map[string]any)["concurrency"] = map[string]any{"global_concurrency_limit": 2}
		},
		hold:   func(t *testing.T, e *env) []*conn { return []*conn{e.dial(t), e.dial(t)} },
		refuse: refuseConnections,
		n:      200,
		msg:    "connection refused: limit",
		metric: `smtp_connections_total{result="refused_limit"}`,
	}, {
		name: "per-address cap",
		edit: func(cfg map[string]any, _ []map[string]any) {
			smtp := cfg["global"].(map[string]any)["smtp"].(map[string]any)
			smtp["max_connections_per_ip"] = 1
			smtp["trusted_networks"] = []string{"192.0.2.1/32"} // trusted networks have no per-address cap
		},
		hold:   func(t *testing.T, e *env) []*conn { return []*conn{e.dial(t)} },
		refuse: refuseConnections,
		n:      200,
		msg:    "connection refused: per-address limit",
		metric: `smtp_connections_total{result="refused_per_ip"}`,
	}, {
		name: "upstream lost mid-envelope",
		hold: func(*testing.T, *env) []*conn { return nil },
		refuse: func(t *testing.T, e *env, n int) {
			c := e.dial(t)
			c.authPlain(userA, password, "235")
			for range n {
				c.cmd("MAIL FROM:<"+userA+">", "250")
				c.cmd("RCPT TO:<drop-at-rcpt@example.net>", "451 4.4.2")
				c.cmd("RSET", "250")
			}
		},
		n:      40, // each one dials a session: slower
		msg:    "upstream envelope failed",
		metric: `errors_total{error_type="upstream_lost"}`,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			e := newEnv(t, envOptions{
				logger: slog.New(slog.NewTextHandler(&logs, nil)),
				admin:  service.AdminOptions{Listen: "127.0.0.1:0", Token: newAdminEnvToken()},
				edit:   tc.edit,
			})
			held := tc.hold(t, e)
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() { tc.refuse(t, e, tc.n/workers) })
			}
			wg.Wait()
			if out := scrapeMetrics(t, e); !strings.Contains(out, fmt.Sprintf("%s %d\n", tc.metric, tc.n)) {
				t.Errorf("metrics lack %s %d:\n%s", tc.metric, tc.n, grepLines(out, tc.metric[:strings.IndexByte(tc.metric, '{')]))
			}
			for _, c := range held {
				c.cmd("QUIT", "221") // or shutdown waits for their transactions
			}
			if err := e.stop(); err != nil { // the summaries still owed are written at shutdown
				t.Fatal(err)
			}
			all := logs.String()
			lines, counted := eventLines(all, tc.msg)
			t.Logf("%d failures: %d log lines for them, %d log bytes in all", tc.n, lines, len(all))
			if counted != tc.n {
				t.Errorf("the log accounts for %d failures, want %d:\n%s", counted, tc.n, grepLines(all, tc.msg))
			}
			if strings.Contains(all, " msg=message ") { // nothing was delivered, or refused by the upstream
				t.Errorf("message outcome lines for transactions that never got a final reply:\n%s", grepLines(all, " msg=message "))
			}
			if lines > 10 {
				t.Errorf("%d log lines for %d failures of one kind, want the first and a few summaries", lines, tc.n)
			}
		})
	}
}

// refuseConnections connects n times and expects the refusal over a cap.
func refuseConnections(t *testing.T, e *env, n int) {
	for range n {
		dialExpect(t, e.addr, "421 4.7.0")
	}
}

// dialExpect connects and requires the greeting (or refusal) want.
func dialExpect(t *testing.T, addr, want string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Error(err)
		return
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	got, err := readFinalLine(bufio.NewReader(nc))
	if err != nil || !strings.HasPrefix(got, want) {
		t.Errorf("greeting %q, %v; want %q", got, err, want)
	}
}

var repeatedAttr = regexp.MustCompile(` repeated=(\d+)`)

// eventLines counts the text log lines of message msg, and the events
// they stand for: one for a full line, N for a summary (repeated=N).
func eventLines(log, msg string) (lines, events int) {
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, " msg="+strconv.Quote(msg)+" ") && !strings.HasSuffix(l, " msg="+strconv.Quote(msg)) {
			continue
		}
		lines++
		if m := repeatedAttr.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			events += n
		} else {
			events++
		}
	}
	return lines, events
}

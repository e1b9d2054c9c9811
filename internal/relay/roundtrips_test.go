package relay_test

import (
	"context"
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// TestEnvelope_fewerRoundTrips: a MAIL sent alone by a client that does
// not pipeline is answered here and goes upstream with the first RCPT,
// whose reply carries the verdict on both; over a session that offers
// CHUNKING, DATA is answered 354 here once a recipient is accepted and
// the body goes as BDAT. Each client batch is one row of steps; the
// fake's Batch calls show what went upstream, in how many round trips.
func TestEnvelope_fewerRoundTrips(t *testing.T) {
	t.Parallel()
	pipe := map[string]string{"PIPELINING": ""}
	chunk := map[string]string{"PIPELINING": "", "CHUNKING": ""}
	r := func(code int, enh string) reply.Reply { return ok(code, enh) }
	tests := []struct {
		name     string
		ext      map[string]string
		batches  []batch           // the upstream's answers, one per Batch
		steps    [][]smtpd.Command // the client's batches
		want     []string          // the client's replies per step
		upstream []string          // the verbs of each upstream Batch
		body     bool              // a body follows the last step
		chunked  int               // bodies sent as BDAT
	}{
		{
			name:     "lone MAIL waits for the RCPT (no chunking: DATA still goes upstream)",
			ext:      pipe,
			batches:  []batch{{replies: []reply.Reply{r(250, "2.1.0"), r(250, "2.1.5")}}, {replies: []reply.Reply{r(354, "")}}},
			steps:    [][]smtpd.Command{{mail("a@example.com")}, {rcpt("b@example.net")}, {data}},
			want:     []string{"250 2.1.0", "250 2.1.5", "354"},
			upstream: []string{"MAIL RCPT", "DATA"},
			body:     true,
		},
		{
			name:     "lone MAIL, lone RCPT, lone DATA with chunking: two round trips",
			ext:      chunk,
			batches:  []batch{{replies: []reply.Reply{r(250, "2.1.0"), r(250, "2.1.5")}}},
			steps:    [][]smtpd.Command{{mail("a@example.com")}, {rcpt("b@example.net")}, {data}},
			want:     []string{"250 2.1.0", "250 2.1.5", "354"},
			upstream: []string{"MAIL RCPT"},
			body:     true, chunked: 1,
		},
		{
			name:     "pipelined envelope with chunking: DATA answered here",
			ext:      chunk,
			batches:  []batch{{replies: []reply.Reply{r(250, "2.1.0"), r(250, "2.1.5")}}},
			steps:    [][]smtpd.Command{{mail("a@example.com"), rcpt("b@example.net"), data}},
			want:     []string{"250 2.1.0, 250 2.1.5, 354"},
			upstream: []string{"MAIL RCPT"},
			body:     true, chunked: 1,
		},
		{
			name:     "the upstream refuses the deferred MAIL: the RCPT and DATA carry its refusal",
			ext:      chunk,
			batches:  []batch{{replies: []reply.Reply{r(550, "5.7.1"), r(503, "5.5.1")}}},
			steps:    [][]smtpd.Command{{mail("a@example.com")}, {rcpt("b@example.net")}, {data}},
			want:     []string{"250 2.1.0", "550 5.7.1", "550 5.7.1"},
			upstream: []string{"MAIL RCPT"},
		},
		{
			name:     "a temporary refusal of the deferred MAIL stays temporary",
			ext:      pipe,
			batches:  []batch{{replies: []reply.Reply{r(451, "4.3.0"), r(503, "5.5.1"), r(503, "5.5.1")}}},
			steps:    [][]smtpd.Command{{mail("a@example.com")}, {rcpt("b@example.net"), rcpt("c@example.net")}},
			want:     []string{"250 2.1.0", "451 4.3.0, 451 4.3.0"},
			upstream: []string{"MAIL RCPT RCPT"},
		},
		{
			name:     "no recipient accepted: DATA kept here is refused, no body",
			ext:      chunk,
			batches:  []batch{{replies: []reply.Reply{r(250, "2.1.0"), r(550, "5.1.1")}}},
			steps:    [][]smtpd.Command{{mail("a@example.com"), rcpt("b@example.net"), data}},
			want:     []string{"250 2.1.0, 550 5.1.1, 554 5.5.1"},
			upstream: []string{"MAIL RCPT"},
		},
		{
			name:     "the session is lost before DATA: 451, not 354",
			ext:      chunk,
			batches:  []batch{{replies: []reply.Reply{r(250, "2.1.0")}, err: errReset, broken: true}},
			steps:    [][]smtpd.Command{{mail("a@example.com"), rcpt("b@example.net"), data}},
			want:     []string{"250 2.1.0, 451 4.4.2, 451 4.4.2"},
			upstream: []string{"MAIL RCPT"},
		},
		{
			name:     "without PIPELINING the MAIL goes at once",
			ext:      map[string]string{},
			batches:  []batch{{replies: []reply.Reply{r(250, "2.1.0")}}, {replies: []reply.Reply{r(250, "2.1.5")}}},
			steps:    [][]smtpd.Command{{mail("a@example.com")}, {rcpt("b@example.net")}},
			want:     []string{"250 2.1.0", "250 2.1.5"},
			upstream: []string{"MAIL", "RCPT"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn := &fakeConn{batches: tc.batches, ext: tc.ext, body: r(250, "2.0.0")}
			h := newHarness(t, &fakeSessions{conns: []*fakeConn{conn}})
			tx, err := h.begin(t)
			if err != nil {
				t.Fatal(err)
			}
			for i, step := range tc.steps {
				if got := codes(tx.Envelope(context.Background(), step)); got != tc.want[i] {
					t.Errorf("step %d: client got %q, want %q", i, got, tc.want[i])
				}
			}
			if tc.body {
				if got := tx.Data(context.Background(), strings.NewReader("Subject: x\r\n\r\nhi\r\n")); got.Code != 250 {
					t.Errorf("body: %v", got)
				}
			}
			tx.Close()
			var sent []string
			for _, b := range conn.sent {
				var verbs []string
				for _, c := range b {
					verbs = append(verbs, c.Verb)
				}
				sent = append(sent, strings.Join(verbs, " "))
			}
			if strings.Join(sent, " | ") != strings.Join(tc.upstream, " | ") {
				t.Errorf("upstream batches %q, want %q", sent, tc.upstream)
			}
			if conn.chunked != tc.chunked {
				t.Errorf("bodies sent as BDAT: %d, want %d", conn.chunked, tc.chunked)
			}
			if !tc.body && conn.bodies != 0 {
				t.Errorf("a body went upstream")
			}
		})
	}
}

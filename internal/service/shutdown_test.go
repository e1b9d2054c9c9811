package service_test

import (
	"strings"
	"testing"
	"time"
)

// TestShutdown_transactionInFlightFinishes: SIGTERM (Run's context ending)
// while a client is in the middle of DATA: the message completes with the
// upstream's 250, the next command gets 421 4.3.2, idle clients are told
// 421 at once, and upstream sessions are QUIT.
func TestShutdown_transactionInFlightFinishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	busy := e.dial(t)
	busy.authPlain(userA, password, "235")
	idle := e.dial(t)
	busy.send("MAIL FROM:<" + userA + ">\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	busy.expect("250")
	busy.expect("250")
	busy.expect("354")
	busy.send("Subject: in flight\r\n\r\nfirst half\r\n")

	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()
	idle.expect("421 4.3.2")

	busy.send("second half\r\n.\r\n")
	busy.expect("250 2.0.0")
	busy.cmd("NOOP", "421 4.3.2")
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	m := e.fp.Messages()
	if len(m) != 1 || !strings.Contains(string(m[0].Data), "second half") {
		t.Fatalf("provider got %+v", m)
	}
}

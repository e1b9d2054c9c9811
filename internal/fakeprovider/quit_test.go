package fakeprovider_test

import (
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

// TestProvider_quitsCountsOnlyQUIT: Stats.Quits tells a session ended with
// QUIT from one the client merely closed.
func TestProvider_quitsCountsOnlyQUIT(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	closed := dial(t, p)
	closed.ehlo()
	closed.conn.Close()
	quit := dial(t, p)
	quit.ehlo()
	quit.do("QUIT", 221, "2.0.0")
	quit.expectClosed()
	if st := p.Stats(); st.Quits != 1 || st.Connections != 2 {
		t.Fatalf("stats %+v, want 1 QUIT over 2 connections", st)
	}
}

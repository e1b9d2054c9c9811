//go:build interop

package interop

// Scenario 3: volume through real software. smtp-source feeds the client
// Postfix, which relays through the proxy into the real upstream (Postfix
// + Dovecot SASL + fosite introspection) while access tokens keep expiring.

import (
	"fmt"
	"os"
	"testing"
)

func TestVolume_everyMessageDeliveredExactlyOnce(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t, "client-postfix.log")
	n := 5000
	if v := os.Getenv("INTEROP_VOLUME"); v != "" {
		fmt.Sscan(v, &n)
	}
	a := p.mtaAccount(t)
	// Production pool defaults (10 sessions, 100 messages each, 300 s);
	// tokens of 4 s refreshed 1 s early, so they expire during the run.
	x := p.startProxy(t, "volume", p.proxyConfig(nil), []*account{a}, p.clientProxyPort)
	before := p.issuerStats(t, a.Email) // the address is shared with scenario 2
	r := p.relayBatch(t, x, a, n, uniq("volume"))
	after := p.issuerStats(t, a.Email)
	t.Logf("SCENARIO 3 (volume): %s; %d token refreshes, %d token introspections by Dovecot",
		r, after["grant_refresh_token_ok"]-before["grant_refresh_token_ok"], after["introspect_active"]-before["introspect_active"])
	r.check(t)
	if r.sessions == 0 || r.sessions*20 > n {
		t.Errorf("%d upstream logins for %d messages: want some, and far fewer than messages", r.sessions, n)
	}
	if r.upConnects != r.sessions {
		t.Errorf("the proxy logged %d upstream logins, the upstream saw %d connections", r.sessions, r.upConnects)
	}
}

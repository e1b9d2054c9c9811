//go:build interop

package interop

// Scenario 3: volume through real software. smtp-source feeds the client
// Postfix, which relays through the proxy (with mandatory STARTTLS, and
// again in plain text) into the real upstream (Postfix + Dovecot SASL +
// fosite introspection) while access tokens keep expiring.

import (
	"fmt"
	"os"
	"testing"
)

// The client Postfix relays with mandatory STARTTLS (TLS sessions reused
// through tlsproxy), then in plain text; each batch gets a proxy of its own.
func TestVolume_everyMessageDeliveredExactlyOnce(t *testing.T) {
	p := getPeers(t)
	p.dumpOnFailure(t, "client-postfix.log")
	n := 5000
	if v := os.Getenv("INTEROP_VOLUME"); v != "" {
		fmt.Sscan(v, &n)
	}
	for _, via := range p.clientPaths(t) {
		t.Run(via.name, func(t *testing.T) {
			a := p.mtaAccount(t)
			// Production pool defaults (10 sessions, 100 messages each, 300 s);
			// tokens of 4 s refreshed 1 s early, so they expire during the run.
			x := p.startProxy(t, "volume-"+via.name, p.proxyConfig(nil), []*account{a}, p.clientProxyPort)
			before := p.issuerStats(t, a.Email) // the address is shared with scenario 2
			r := p.relayBatch(t, x, a, via, n, uniq("volume"))
			after := p.issuerStats(t, a.Email)
			t.Logf("SCENARIO 3 (volume, %s): %s; %d token refreshes, %d token introspections by Dovecot", via.name,
				r, after["grant_refresh_token_ok"]-before["grant_refresh_token_ok"], after["introspect_active"]-before["introspect_active"])
			r.check(t, via)
			if r.sessions == 0 || r.sessions*20 > n {
				t.Errorf("%d upstream logins for %d messages: want some, and far fewer than messages", r.sessions, n)
			}
			if r.upConnects != r.sessions {
				t.Errorf("the proxy logged %d upstream logins, the upstream saw %d connections", r.sessions, r.upConnects)
			}
			if r.clientAuths*20 > n {
				t.Errorf("%d client sessions for %d messages: the client Postfix did not reuse its connections", r.clientAuths, n)
			}
		})
	}
}

package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/bench"
)

// A tiny run of both modes, with the proxy in-process (no binary to build):
// every message is counted at the provider in both modes, the ratio is
// computed, and the proxy stays within its session cap.
func TestRun_smokeBothModes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tlsOn := range []bool{false, true} {
		rep, err := bench.Run(ctx, bench.Options{
			Accounts:    2,
			Connections: 2,
			Messages:    500,
			TLS:         tlsOn,
			Latency:     time.Millisecond,
			Runner:      bench.InProcess,
		})
		if err != nil {
			t.Fatalf("tls=%v: %v", tlsOn, err)
		}
		for _, r := range []*bench.Result{rep.Proxy, rep.Direct} {
			if r == nil {
				t.Fatalf("tls=%v: a mode is missing: %+v", tlsOn, rep)
			}
			if r.Delivered != 500 || r.Accepted != 500 || r.Refused != 0 || r.Errors != 0 {
				t.Errorf("tls=%v %s: delivered %d, accepted %d, refused %d, errors %d; want 500 delivered and accepted",
					tlsOn, r.Mode, r.Delivered, r.Accepted, r.Refused, r.Errors)
			}
			// Issue target: a pipelined single-recipient message on a warm
			// session costs at most 2 upstream round trips. The proxy opens
			// its 2 sessions inside the window (connect, EHLO, AUTH; with TLS
			// also STARTTLS and the handshake), which adds about 0.02.
			if r.RoundTripsPerMessage == nil || *r.RoundTripsPerMessage < 2 || *r.RoundTripsPerMessage > 2.05 {
				t.Errorf("tls=%v %s: %v upstream round trips per message, want 2 to 2.05", tlsOn, r.Mode, r.RoundTripsPerMessage)
			}
			if r.LatencyP99 < r.LatencyP50 || r.LatencyP50 <= 0 {
				t.Errorf("tls=%v %s: latencies p50 %v p99 %v", tlsOn, r.Mode, r.LatencyP50, r.LatencyP99)
			}
		}
		if rep.Ratio == nil || *rep.Ratio <= 0 {
			t.Errorf("tls=%v: ratio not computed: %v", tlsOn, rep.Ratio)
		}
		p := rep.Proxy
		if p.Logins == 0 || p.Logins > p.SessionsOpened {
			t.Errorf("tls=%v: proxy logins %d, sessions opened %d", tlsOn, p.Logins, p.SessionsOpened)
		}
		if rep.CapHeld == nil || !*rep.CapHeld {
			t.Errorf("tls=%v: cap not held: peak %d", tlsOn, p.PeakSessionsPerAccount)
		}
		if p.ProxyCPUPerMessageMS != nil || p.ProxyPeakRSSBytes != 0 {
			t.Errorf("tls=%v: in-process run reports proxy CPU or RSS it cannot measure", tlsOn)
		}

		var text, js bytes.Buffer
		if err := rep.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"delivered per minute", "proxy/direct", "upstream round trips / msg"} {
			if !strings.Contains(text.String(), want) {
				t.Errorf("text report lacks %q:\n%s", want, text.String())
			}
		}
		if err := rep.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		var back map[string]any
		if err := json.Unmarshal(js.Bytes(), &back); err != nil {
			t.Fatalf("JSON report does not parse: %v\n%s", err, js.String())
		}
		if _, ok := back["ratio_proxy_to_direct"]; !ok {
			t.Errorf("JSON report lacks the ratio:\n%s", js.String())
		}
	}
}

func TestRun_refusesBadOptions(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]bench.Options{
		"mode":              {Mode: "sideways"},
		"negative latency":  {Latency: -time.Millisecond},
		"no relay, latency": {NoRelay: true, Latency: time.Millisecond},
		"rcpts":             {Rcpts: 101},
	} {
		if _, err := bench.Run(context.Background(), o); err == nil {
			t.Errorf("%s: Run accepted %+v", name, o)
		}
	}
}

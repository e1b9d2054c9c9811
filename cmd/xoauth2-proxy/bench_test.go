package main

import (
	"encoding/json"
	"os"
	"testing"
)

// asMainEnv makes the test binary act as xoauth2-proxy itself, so that
// bench can start it as the proxy ("serve") and as the fake provider's
// process ("bench-upstream") without a separate build.
const asMainEnv = "XOAUTH2_PROXY_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// benchResult is the part of a mode's result in bench --json that the
// test checks.
type benchResult struct {
	Delivered   int64    `json:"delivered"`
	Accepted    int64    `json:"accepted"`
	ProxyCPU    *float64 `json:"proxy_cpu_per_message_ms"`
	ProviderCPU *float64 `json:"provider_cpu_per_message_ms"`
	RoundTrips  *float64 `json:"upstream_round_trips_per_message"`
}

// bench as operators run it: the proxy and the fake provider each in a
// process of its own (this binary), every message counted in both modes,
// each process's CPU time measured; and with --provider-in-process, the
// provider back in the bench process.
func TestBench_processes(t *testing.T) {
	t.Setenv(asMainEnv, "1") // inherited by the children; not parallel
	for _, tc := range []struct {
		flag         string
		ownProcess   bool
		wantProvider bool
	}{
		{"--provider-in-process=false", true, true},
		{"--provider-in-process", false, false},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			code, out, errs := runCmd(t, "", "bench", "--accounts", "3", "--connections", "3",
				"--messages", "60", "--duration", "0", "--tls", "--json", tc.flag)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errs)
			}
			var rep struct {
				Settings struct {
					ProviderOwnProcess bool `json:"provider_own_process"`
				} `json:"settings"`
				Proxy, Direct benchResult
				Ratio         *float64 `json:"ratio_proxy_to_direct"`
			}
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("report: %v\n%s", err, out)
			}
			if rep.Settings.ProviderOwnProcess != tc.ownProcess {
				t.Errorf("provider_own_process = %v, want %v", rep.Settings.ProviderOwnProcess, tc.ownProcess)
			}
			for name, r := range map[string]benchResult{"proxy": rep.Proxy, "direct": rep.Direct} {
				if r.Delivered != 60 || r.Accepted != 60 {
					t.Errorf("%s: delivered %d, accepted %d; want 60", name, r.Delivered, r.Accepted)
				}
				if (r.ProviderCPU != nil) != tc.wantProvider {
					t.Errorf("%s: provider CPU measured = %v, want %v", name, r.ProviderCPU != nil, tc.wantProvider)
				}
				if r.RoundTrips == nil {
					t.Errorf("%s: round trips not counted", name)
				}
			}
			if rep.Proxy.ProxyCPU == nil {
				t.Error("the proxy subprocess's CPU was not measured")
			}
			if rep.Ratio == nil {
				t.Error("no ratio")
			}
		})
	}
}

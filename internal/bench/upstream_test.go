package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// The upstream process's protocol, in-process: the spec in, one ready line
// out, counters over HTTP, and a clean stop when its input ends.
func TestServeUpstream_specReadyCountersEOF(t *testing.T) {
	t.Parallel()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ServeUpstream(ctx, inR, outW) }()

	spec := upstreamSpec{Accounts: makeAccounts(2), TLS: true}
	go func() { _ = json.NewEncoder(inW).Encode(spec) }()
	var ready upstreamReady
	line, err := bufio.NewReader(outR).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(line, &ready); err != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	if ready.SMTPAddr == "" || ready.TokenURL == "" || ready.CAPEM == nil {
		t.Fatalf("ready = %+v; want addresses and, with TLS, the CA", ready)
	}
	resp, err := http.Get(ready.StatsURL)
	if err != nil {
		t.Fatal(err)
	}
	var c counters
	err = json.NewDecoder(resp.Body).Decode(&c)
	resp.Body.Close()
	if err != nil || !c.Relayed || c.FP.Messages != 0 {
		t.Fatalf("counters = %+v, %v; want relayed, no messages", c, err)
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeUpstream: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("ServeUpstream did not stop when its input ended")
	}
}

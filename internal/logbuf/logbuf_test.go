package logbuf_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/logbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type syncBuf struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuf) snapshot() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String(), s.writes
}

func TestWriter_linesWholeInOrderAndBatched(t *testing.T) {
	t.Parallel()
	var out syncBuf
	w := logbuf.New(&out, time.Hour) // flush only on Close
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				fmt.Fprintf(w, "g=%d i=%03d %s\n", g, i, strings.Repeat("x", 40))
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s, writes := out.snapshot()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines", len(lines))
	}
	last := map[string]int{}
	for _, l := range lines {
		var g, i int
		if _, err := fmt.Sscanf(l, "g=%d i=%d", &g, &i); err != nil || len(l) != len("g=0 i=000 ")+40 {
			t.Fatalf("torn line %q", l)
		}
		if prev, ok := last[fmt.Sprint(g)]; ok && i != prev+1 {
			t.Fatalf("out of order: %q after %d", l, prev)
		}
		last[fmt.Sprint(g)] = i
	}
	if writes > 2 {
		t.Errorf("%d writes for 1000 lines of ~55 bytes: not batched", writes)
	}
}

func TestWriter_flushesOnItsOwn(t *testing.T) {
	t.Parallel()
	var out syncBuf
	w := logbuf.New(&out, 5*time.Millisecond)
	defer w.Close()
	fmt.Fprintln(w, "hello")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s, _ := out.snapshot(); s == "hello\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("line never flushed")
		}
		time.Sleep(time.Millisecond)
	}
}

package tokenstore_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// crashDirEnv tells the re-executed test binary to act as the writer.
const crashDirEnv = "TOKENSTORE_CRASH_WRITER_DIR"

// crashAccounts makes each write large enough (about 300 KB) to be killed
// in the middle of it.
const crashAccounts = 2000

// TestCrash_writer is not a test on its own: run by TestCrash_killedWriter
// in a child process, it rotates one account's refresh token in a loop,
// printing each generation once PutSync has returned, until it is killed.
func TestCrash_writer(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash_killedWriter")
	}
	s, err := tokenstore.Open(tokenstore.Options{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	e, _ := s.Get("rotating")
	gen, _ := strconv.Atoi(strings.TrimPrefix(e.RefreshToken.Reveal(), "rt-"))
	for {
		gen++
		for i := range crashAccounts {
			s.Put(fmt.Sprintf("filler_%d", i), tokenstore.Entry{Credential: "v1:x", AccessToken: secret.New(fmt.Sprintf("at-%d-%d", gen, i))})
		}
		if err := s.PutSync("rotating", tokenstore.Entry{Credential: "v1:x", RefreshToken: secret.New("rt-" + strconv.Itoa(gen))}); err != nil {
			fmt.Println("write:", err)
			os.Exit(2)
		}
		fmt.Println(gen) // durable: only now may the token be used
	}
}

// TestCrash_killedWriter kills a writing process with SIGKILL at random
// moments. Every time, the file must still parse and hold the last
// generation the writer reported durable, or the one it was writing.
func TestCrash_killedWriter(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	dir := t.TempDir()
	last, midWrite := 0, 0
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrash_writer$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := make(chan int, 1024)
		go func() {
			defer close(acked)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if n, err := strconv.Atoi(sc.Text()); err == nil {
					acked <- n
				} else {
					t.Errorf("writer: %s", sc.Text())
				}
			}
		}()
		// Let it complete a few writes, then kill it at a random moment.
		for range 3 + round {
			if n, ok := <-acked; ok {
				last = n
			}
		}
		if round%2 == 0 {
			time.Sleep(time.Duration(rand.IntN(20_000)) * time.Microsecond)
		} else {
			// Aim for the middle of a write: kill as soon as a temporary
			// file shows up.
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
				if temps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(temps) > 0 {
					break
				}
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		for n := range acked {
			last = n
		}
		cmd.Wait() // killed: the error is expected

		if temps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(temps) > 0 {
			midWrite++ // killed between creating the temporary file and the rename
		}
		data, err := os.ReadFile(filepath.Join(dir, tokenstore.DefaultFileName))
		if err != nil {
			t.Fatal(err)
		}
		entries, err := tokenstore.Parse(data)
		if err != nil {
			t.Fatalf("round %d: file torn by the kill: %v", round, err)
		}
		got := entries["rotating"].RefreshToken.Reveal()
		if got != "rt-"+strconv.Itoa(last) && got != "rt-"+strconv.Itoa(last+1) {
			t.Fatalf("round %d: file holds %q; the writer had made rt-%d durable", round, got, last)
		}
		if len(entries) != crashAccounts+1 {
			t.Fatalf("round %d: %d entries, want %d", round, len(entries), crashAccounts+1)
		}
		// Reopening cleans up the killed writer's temporary file.
		if _, err := tokenstore.Open(tokenstore.Options{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		if temps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(temps) != 0 {
			t.Fatalf("temporary files left after reopen: %v", temps)
		}
		last, _ = strconv.Atoi(strings.TrimPrefix(got, "rt-"))
	}
	t.Logf("6 kills, %d of them in the middle of a write", midWrite)
}

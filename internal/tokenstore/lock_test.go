package tokenstore_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/tokenstore"
)

// lockWriterEnv tells the re-executed test binary to act as one of the
// concurrent writers of TestLock_concurrentProcessesLoseNothing; its value
// is "dir:name".
const lockWriterEnv = "TOKENSTORE_LOCK_WRITER"

// lockWrites is how many entries each writer adds, one PutSync each.
const lockWrites = 60

// TestLock_writer is not a test on its own: run by
// TestLock_concurrentProcessesLoseNothing in child processes, it adds its
// entries one PutSync at a time and, after each, reads the file as a third
// process would: every entry it made durable must still be there. Without
// the file lock, another writer's read-merge-write that started before
// this write replaces the file without it.
func TestLock_writer(t *testing.T) {
	v := os.Getenv(lockWriterEnv)
	if v == "" {
		t.Skip("helper process for TestLock_concurrentProcessesLoseNothing")
	}
	dir, name := filepath.Dir(v), filepath.Base(v)
	s, err := tokenstore.Open(tokenstore.Options{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	for i := range lockWrites {
		id := name + "_" + strconv.Itoa(i)
		if err := s.PutSync(id, tokenstore.Entry{Credential: "v1:x", RefreshToken: secret.New("rt-" + id)}); err != nil {
			fmt.Println("write:", err)
			os.Exit(2)
		}
		data, err := os.ReadFile(filepath.Join(dir, tokenstore.DefaultFileName))
		if err != nil {
			fmt.Println("read:", err)
			os.Exit(2)
		}
		entries, err := tokenstore.Parse(data)
		if err != nil {
			fmt.Println("parse:", err)
			os.Exit(2)
		}
		for j := 0; j <= i; j++ {
			if _, ok := entries[name+"_"+strconv.Itoa(j)]; !ok {
				fmt.Printf("LOST %s_%d after %d durable writes\n", name, j, i+1)
				os.Exit(3)
			}
		}
	}
}

// TestLock_concurrentProcessesLoseNothing runs three processes writing the
// same state file at once (a proxy, the CLI, a second proxy): no entry one
// of them made durable may disappear from the file, and at the end the
// file holds every entry of every writer.
func TestLock_concurrentProcessesLoseNothing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	dir := t.TempDir()
	names := []string{"proxy", "cli", "second"}
	var wg sync.WaitGroup
	outs := make([][]byte, len(names))
	errs := make([]error, len(names))
	for i, name := range names {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLock_writer$", "-test.count=1")
		cmd.Env = append(os.Environ(), lockWriterEnv+"="+filepath.Join(dir, name))
		wg.Go(func() { outs[i], errs[i] = cmd.CombinedOutput() })
	}
	wg.Wait()
	for i, name := range names {
		if errs[i] != nil {
			t.Errorf("writer %s: %v\n%s", name, errs[i], outs[i])
		}
	}
	s, err := tokenstore.Open(tokenstore.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Len(), len(names)*lockWrites; got != want {
		t.Errorf("the file holds %d entries, want %d", got, want)
	}
}

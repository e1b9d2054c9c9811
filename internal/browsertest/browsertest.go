// Package browsertest drives Debian's headless Chromium from Go tests
// through chromedp, so that the pages the proxy serves (the console, the
// onboarding flow) are tested the way an operator or a mailbox owner
// meets them: scripts run, the Content-Security-Policy is enforced, and
// a console error fails the test.
//
// A test that needs the browser calls New; where no Chromium is
// installed it is skipped with the reason, except under CI=true, where
// .ci/run has installed the chromium package and a skip would hide a
// missing test.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ScreenshotDirEnv names the directory screenshots are kept in (CI keeps
// it as an artifact); unset, they go to the test's temporary directory.
const ScreenshotDirEnv = "XP_SCREENSHOT_DIR"

// ExecPath finds the browser: $CHROMIUM, else chromium or
// google-chrome on PATH.
func ExecPath() (string, bool) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p, true
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// Browser is one headless browser for one test, with the errors its pages
// reported.
type Browser struct {
	t      testing.TB
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

// New starts a headless browser whose first tab is ready for
// chromedp.Run(b.Context(), ...). It stops with the test.
func New(t testing.TB) *Browser {
	t.Helper()
	path, ok := ExecPath()
	if !ok {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed, and CI=true: .ci/run must install it")
		}
		t.Skip("chromium is not installed (apt-get install chromium); skipping the browser test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // tests run as root in CI, where the sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	b := &Browser{t: t, ctx: ctx}
	// Start the browser now, so that a browser that cannot start fails
	// here and not in the first step of the test. This first call gets the
	// tab's own context, not one with a deadline: the browser lives as
	// long as the context of the call that started it. A stuck start is
	// bounded by the allocator's own timeout (WSURLReadTimeout, 20 s).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start %s: %v", path, err)
	}
	// The console is read by a goroutine the test owns: it ends when the
	// tab's context is cancelled at cleanup, and cleanup waits for it.
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.record(m.String() + " " + m.URL)
			}
		}
	}()
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-done
	})
	return b
}

func (b *Browser) record(s string) {
	b.mu.Lock()
	b.errors = append(b.errors, s)
	b.mu.Unlock()
}

// Context is the tab's context, for chromedp.Run. Callers bound each run
// with their own timeout derived from it.
func (b *Browser) Context() context.Context { return b.ctx }

// Do runs steps in the tab within timeout and fails the test on error.
func (b *Browser) Do(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// Get runs one action that returns a value (chromedp.Text, Title,
// Evaluate, ...) within timeout and fails the test on error.
func Get[T any](b *Browser, timeout time.Duration, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v", err)
	}
	return v
}

// Errors returns the errors pages reported so far and forgets them.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errors
	b.errors = nil
	return e
}

// NoErrors fails the test if a page reported an error since the last
// call (a script exception, console.error, a CSP violation, a failed
// load).
func (b *Browser) NoErrors(where string) {
	b.t.Helper()
	for _, e := range b.Errors() {
		b.t.Errorf("%s: page error: %s", where, e)
	}
}

// Screenshot keeps a full-page PNG of the current page under the
// screenshot directory, named after the test and name.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	dir := os.Getenv(ScreenshotDirEnv)
	if dir == "" {
		dir = b.t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatalf("screenshot dir: %v", err)
	}
	// Quality 100 is what makes chromedp capture PNG; anything less is JPEG.
	png := Get(b, 30*time.Second, chromedp.FullScreenshot(100))
	file := filepath.Join(dir, sanitize(b.t.Name()+"-"+name)+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	return file
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

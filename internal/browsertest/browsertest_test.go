package browsertest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/webui"
)

// TestBrowser_reportsPageErrors shows the harness catches what a page
// gets wrong: inline script refused by the policy, a thrown exception, a
// missing asset; and that a clean page reports nothing.
func TestBrowser_reportsPageErrors(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle(webui.AssetPrefix, webui.Assets())
	mux.HandleFunc("/clean", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><html lang="en"><head><title>ok</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/assets/style.css"></head><body><h1 id="h">clean</h1></body></html>`)
	})
	mux.HandleFunc("/inline", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><html><head><title>x</title></head><body><script>document.title="ran"</script></body></html>`)
	})
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><html><head><title>x</title><script src="/assets/nope.js"></script></head><body></body></html>`)
	})
	srv := httptest.NewServer(webui.Secure(mux))
	defer srv.Close()

	b := New(t)
	b.Do(30*time.Second, chromedp.Navigate(srv.URL+"/clean"))
	h1 := Get(b, 30*time.Second, chromedp.Text("#h"))
	if h1 != "clean" {
		t.Fatalf("h1 = %q", h1)
	}
	// Wait for the page's last load event before asking for errors.
	Get(b, 30*time.Second, chromedp.Poll[bool](`document.readyState === "complete"`))
	b.NoErrors("/clean")

	for _, path := range []string{"/inline", "/missing"} {
		b.Do(30*time.Second, chromedp.Navigate(srv.URL+path))
		title := Get(b, 30*time.Second, chromedp.Title())
		if title == "ran" {
			t.Errorf("%s: inline script ran despite the policy", path)
		}
		var errs []string
		for deadline := time.Now().Add(10 * time.Second); len(errs) == 0 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			errs = b.Errors()
		}
		if len(errs) == 0 {
			t.Errorf("%s: no page error reported", path)
		}
		t.Logf("%s: %s", path, strings.Join(errs, "; "))
	}
	if f := b.Screenshot("last"); f == "" {
		t.Error("no screenshot")
	}
}

package console_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/browsertest"
)

// wait is the generous deadline of one browser step on a loaded box.
const wait = time.Minute

// poll waits until a page expression is true, across navigations (a
// form's submission replaces the page the expression ran in).
func poll(t *testing.T, b *browsertest.Browser, expr string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	loc, _ := chromedp.Run(b.Context(), chromedp.Location())
	b.Screenshot("poll-failed")
	t.Fatalf("waited for %s at %s (last error %v)", expr, loc, last)
}

// page navigates, waits for the page's load, checks that it reported no
// error and keeps a screenshot.
func page(t *testing.T, b *browsertest.Browser, url, name string) {
	b.Do(wait, chromedp.Navigate(url))
	poll(t, b, `document.readyState === "complete"`)
	b.NoErrors(name)
	b.Screenshot(name)
	// For screen readers: every control labelled, every table's headers
	// scoped, every link and button named.
	unlabelled := browsertest.Get(b, wait, chromedp.Evaluate[[]string](`[
		...[...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
			.filter(e => e.labels.length === 0 && !e.getAttribute("aria-label")).map(e => "control " + (e.id || e.name)),
		...[...document.querySelectorAll("th")].filter(e => !e.getAttribute("scope")).map(e => "th " + e.textContent),
		...[...document.querySelectorAll("a, button")].filter(e => e.textContent.trim() === "").map(e => "unnamed " + e.outerHTML)]`))
	for _, u := range unlabelled {
		t.Errorf("%s: %s", name, u)
	}
}

// TestConsole_inBrowser drives the console in headless Chromium against a
// proxy of 10,000 accounts in front of the fake provider: sign-in with
// the keyboard, the overview's live numbers against /metrics after a batch
// of mail, one account found among 10,000 and disabled (its client's next
// message refused), a provider quota cool-down lifted (mail flows again),
// the onboarding page without onboarding, a narrow window, sign-out.
// Every page without a console error or CSP violation, each screenshotted.
func TestConsole_inBrowser(t *testing.T) {
	t.Parallel()
	b := browsertest.New(t)
	p := startProxy(t, proxyOptions{n: 10_000})

	// Sign-in: a page asks for it; a wrong token is refused.
	page(t, b, p.base+"/", "signin")
	if loc := browsertest.Get(b, wait, chromedp.Location()); !strings.HasSuffix(loc, "/signin") {
		t.Fatalf("not signed in: at %s, want /signin", loc)
	}
	b.Do(wait, chromedp.SendKeys("#token", "wrong-token\n"))
	poll(t, b, `document.querySelector("[role=alert]") !== null`)
	if got := browsertest.Get(b, wait, chromedp.Text("[role=alert]")); !strings.Contains(got, "Wrong token") {
		t.Errorf("wrong token: %q", got)
	}
	// The refused sign-in's 401 is the one error the browser reports.
	for _, e := range b.Errors() {
		if !strings.Contains(e, "401") || !strings.Contains(e, "/signin") {
			t.Errorf("wrong token: page error: %s", e)
		}
	}
	b.Do(wait, chromedp.SendKeys("#token", adminToken+"\n"))
	poll(t, b, `document.querySelector("h1") && document.querySelector("h1").textContent === "Overview"`)
	b.NoErrors("sign-in")
	// The keyboard: the first Tab reaches the skip link, Enter follows it.
	b.Do(wait, chromedp.KeyEvent("\t"))
	if got := browsertest.Get(b, wait, chromedp.Evaluate[string](`document.activeElement.className`)); got != "skip" {
		t.Errorf("first Tab focuses %q, want the skip link", got)
	}
	b.Do(wait, chromedp.KeyEvent("\r"))
	poll(t, b, `location.hash === "#main"`)

	// A batch of mail: accepted, deferred (451 after the dot), rejected
	// (554 after the dot), from ten accounts.
	for i := range 10 {
		c := p.login(t, i)
		for k := range 3 {
			if got := c.send(email(i), fmt.Sprintf("r%d@example.net", k)); got != "250" {
				t.Fatalf("send: %q", got)
			}
		}
		if i%3 == 0 {
			c.send(email(i), "faildata-451@example.net")
		}
		if i%5 == 0 {
			if got := c.send(email(i), "faildata-550-5.7.1@example.net"); !strings.HasPrefix(got, "550") {
				t.Fatalf("rejected: %q", got)
			}
		}
	}
	sent, deferred, rejected := p.metric(t, `messages_total{result="sent"}`), p.metric(t, `messages_total{result="deferred"}`),
		p.metric(t, `messages_total{result="rejected"}`)
	if sent != 30 || deferred != 4 || rejected != 2 {
		t.Fatalf("metrics: %d sent, %d deferred, %d rejected; want 30, 4, 2", sent, deferred, rejected)
	}
	// The page, loaded before the batch, catches up by itself.
	poll(t, b, fmt.Sprintf(`document.getElementById("live-accepted").textContent === "%d" &&
		document.getElementById("live-deferred").textContent === "%d" &&
		document.getElementById("live-rejected").textContent === "%d"`, sent, deferred, rejected))
	if n := browsertest.Get(b, wait, chromedp.Evaluate[int](`document.querySelectorAll("#chart rect").length`)); n == 0 {
		t.Error("the chart shows no bar after the batch")
	}
	if got := browsertest.Get(b, wait, chromedp.Text("#live-state-ok")); got != "10000" {
		t.Errorf("accounts ok: %q, want 10000", got)
	}
	b.NoErrors("overview, live")
	b.Screenshot("overview")

	// One account among 10,000: search, then its page.
	const target = 4242
	page(t, b, p.base+"/accounts", "accounts")
	b.Do(wait, chromedp.SendKeys("#q", email(target)+"\n"))
	poll(t, b, `document.getElementById("count") && document.getElementById("count").textContent.startsWith("1 of 10000 accounts")`)
	b.Do(wait, chromedp.Click(`a[href="/accounts/`+id(target)+`"]`))
	poll(t, b, `document.querySelector("h1") && document.querySelector("h1").textContent === "`+email(target)+`"`)
	b.NoErrors("account")
	b.Screenshot("account")

	// Disable it (confirmed first); its client's next message is refused.
	client := p.login(t, target)
	if got := client.send(email(target), "r@example.net"); got != "250" {
		t.Fatalf("before disabling: %q", got)
	}
	b.Do(wait, chromedp.Click("#confirm-disable"), chromedp.Click("#disable"))
	poll(t, b, `document.getElementById("enable") !== null`)
	b.NoErrors("disable")
	b.Screenshot("disabled")
	if got := client.send(email(target), "r@example.net"); !strings.HasPrefix(got, "4") && !strings.HasPrefix(got, "5") {
		t.Errorf("after disabling: %q, want a refusal", got)
	}
	b.Do(wait, chromedp.Click("#enable"))
	poll(t, b, `document.getElementById("disable") !== null`)

	// A provider quota reply cools another account down; lifting it on
	// its page lets mail flow again.
	const cooled = 77
	cc := p.login(t, cooled)
	if got := cc.send(email(cooled), "reject-550-5.4.5@example.net"); !strings.HasPrefix(got, "451") {
		t.Fatalf("quota reply: %q", got)
	}
	if got := cc.send(email(cooled), "r@example.net"); !strings.HasPrefix(got, "451 4.7.0") {
		t.Fatalf("while cooling down: %q", got)
	}
	page(t, b, p.base+"/", "overview-attention")
	if got := browsertest.Get(b, wait, chromedp.Text("#live-state-cooling_down")); got != "1" {
		t.Errorf("cooling down on the overview: %q", got)
	}
	page(t, b, p.base+"/accounts/"+id(cooled), "cooling-down")
	if got := browsertest.Get(b, wait, chromedp.Text("#cooldown")); !strings.Contains(got, "550 5.4.5") {
		t.Errorf("cool-down cause: %q", got)
	}
	if got := browsertest.Get(b, wait, chromedp.Text("#replies")); !strings.Contains(got, "550 5.4.5") {
		t.Errorf("last upstream replies: %q, want the quota reply", got)
	}
	b.Do(wait, chromedp.Click("#lift"))
	poll(t, b, `document.body.textContent.includes("Cool-down lifted.")`)
	b.NoErrors("lifted")
	b.Screenshot("lifted")
	if got := cc.send(email(cooled), "r@example.net"); got != "250" {
		t.Errorf("after lifting: %q", got)
	}

	// Onboarding, not configured: the page says how.
	page(t, b, p.base+"/onboarding", "onboarding")
	if got := browsertest.Get(b, wait, chromedp.Text("#not-configured")); !strings.Contains(got, "docs/config.md") {
		t.Errorf("onboarding page: %q", got)
	}

	// A narrow window: the page does not scroll sideways (tables do).
	b.Do(wait, chromedp.EmulateViewport(375, 800))
	page(t, b, p.base+"/accounts?q=sender0001", "accounts-narrow")
	if w := browsertest.Get(b, wait, chromedp.Evaluate[string](`document.documentElement.scrollWidth + " " + window.innerWidth`)); !narrowOK(w) {
		t.Errorf("narrow window: scroll width, window width = %s", w)
	}
	page(t, b, p.base+"/", "overview-narrow")
	b.Do(wait, chromedp.EmulateViewport(1280, 900))

	// Sign out: the pages ask for the token again.
	b.Do(wait, chromedp.Click(`form.signout button`))
	poll(t, b, `location.pathname === "/signin"`)
	page(t, b, p.base+"/accounts", "signed-out")
	if loc := browsertest.Get(b, wait, chromedp.Location()); !strings.HasSuffix(loc, "/signin") {
		t.Errorf("after sign-out: at %s", loc)
	}
}

// narrowOK reads "scrollWidth innerWidth" and reports no sideways scroll.
func narrowOK(s string) bool {
	f := strings.Fields(s)
	if len(f) != 2 {
		return false
	}
	sw, err1 := strconv.Atoi(f[0])
	iw, err2 := strconv.Atoi(f[1])
	return err1 == nil && err2 == nil && sw <= iw+1
}

// TestConsole_onboardingInBrowser: with onboarding configured, the page
// lists the invitations and their states, the account page offers an
// invitation, and neither shows a link; with a cluster, its page.
func TestConsole_onboardingInBrowser(t *testing.T) {
	t.Parallel()
	b := browsertest.New(t)
	ob := &fakeOnboarding{emailOf: func(id string) string { return strings.Replace(id, "acct", "sender", 1) + "@example.com" }}
	p := startProxy(t, proxyOptions{n: 3, onboarding: ob, cluster: fakeCluster{}})
	for i := range 2 {
		if _, _, err := ob.Invite(context.Background(), id(i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	ob.mu.Lock()
	ob.list[1].State, ob.list[1].Reason = "failed", "the provider refused consent"
	ob.mu.Unlock()
	page(t, b, p.base+"/signin", "onboarding-signin")
	b.Do(wait, chromedp.SendKeys("#token", adminToken+"\n"))
	poll(t, b, `location.pathname === "/"`)
	page(t, b, p.base+"/onboarding", "onboarding-configured")
	got := browsertest.Get(b, wait, chromedp.Text("#invitations"))
	for _, want := range []string{email(0), "pending", email(1), "failed", "the provider refused consent"} {
		if !strings.Contains(got, want) {
			t.Errorf("invitations table lacks %q: %q", want, got)
		}
	}
	html := browsertest.Get(b, wait, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	for _, l := range ob.Links() {
		if strings.Contains(html, l) {
			t.Error("an invitation link in the page")
		}
	}
	page(t, b, p.base+"/cluster", "cluster")
	if got := browsertest.Get(b, wait, chromedp.Text("#store")); !strings.Contains(got, "connected") {
		t.Errorf("cluster page: store %q", got)
	}
	page(t, b, p.base+"/accounts/"+id(2), "account-with-onboarding")
	if n := browsertest.Get(b, wait, chromedp.Evaluate[int](`document.querySelectorAll("#invite").length`)); n != 1 {
		t.Error("no invitation button on the account page")
	}
}

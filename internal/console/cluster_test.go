package console_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/admin"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/console"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

type fakeCluster struct{}

func (fakeCluster) Proxies() []console.ProxyView {
	return []console.ProxyView{{ID: "proxy-a", Addr: "10.0.0.1:2525", Leases: 12, LastSeen: time.Now()},
		{ID: "proxy-b", Addr: "10.0.0.2:2525", Leases: 3, LastSeen: time.Now()}}
}
func (fakeCluster) StoreState() string { return "redis 127.0.0.1:6379: connected" }

// TestClusterAndCSVUpload: the cluster page and its nav entry exist only
// with a Cluster; invitations come from an uploaded CSV file too.
func TestClusterAndCSVUpload(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyOptions{n: 3})
	ob := &fakeOnboarding{emailOf: func(id string) string { return id + "@example.com" }}
	for _, cl := range []console.Cluster{nil, fakeCluster{}} {
		srv := httptest.NewServer(console.New(console.Options{Backend: p.svc, Cluster: cl, Onboarding: ob,
			API: admin.New(p.svc, admin.Options{Token: secret.New(adminToken)})}))
		defer srv.Close()
		c := &client{t: t, base: srv.URL, hc: p.client(t).hc}
		c.signIn()
		code, body := c.get("/cluster")
		_, overview := c.get("/")
		nav := strings.Contains(overview, `href="/cluster"`)
		if cl == nil && (code != http.StatusNotFound || nav) {
			t.Errorf("without a cluster: /cluster %d, nav entry %v", code, nav)
		}
		if cl != nil && (code != 200 || !nav || !strings.Contains(body, "proxy-b") || !strings.Contains(body, "redis 127.0.0.1:6379: connected")) {
			t.Errorf("with a cluster: /cluster %d, nav entry %v", code, nav)
		}
	}

	srv := httptest.NewServer(console.New(console.Options{Backend: p.svc, Onboarding: ob,
		API: admin.New(p.svc, admin.Options{Token: secret.New(adminToken)})}))
	defer srv.Close()
	c := &client{t: t, base: srv.URL, hc: p.client(t).hc}
	c.signIn()
	tok := c.csrf("/onboarding")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("csrf", tok)
	fw, _ := mw.CreateFormFile("csv", "accounts.csv")
	fw.Write([]byte("name,email\nSecond," + email(1) + "\nThird," + email(2) + "\n"))
	mw.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/onboarding", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("CSV upload: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	inv := ob.Invitations()
	if len(inv) != 2 || inv[0].AccountID != id(1) || inv[1].AccountID != id(2) {
		t.Errorf("invitations from the CSV: %+v", inv)
	}
	// Nothing to invite: the page says so, nothing is created.
	code, _, body := c.do("POST", "/onboarding", url.Values{"csrf": {tok}, "accounts": {"\n# none\n"}}, nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "no account given") || len(ob.Invitations()) != 2 {
		t.Errorf("empty list: %d", code)
	}
}

// TestClusterPage_realRedis: in cluster mode the console's Cluster page
// lists the proxies sharing one Redis, from their heartbeats, each with
// the session slots it holds.
func TestClusterPage_realRedis(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{})
	a := startProxy(t, proxyOptions{n: 2, redis: rs.Addr})
	startProxy(t, proxyOptions{n: 2, redis: rs.Addr})
	c := a.client(t)
	c.signIn()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := c.get("/cluster")
		if code == 200 && strings.Contains(body, "Redis up; 2 live proxies") && strings.Count(body, "#") >= 2 && strings.Contains(body, "this proxy") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/cluster %d: %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package admin

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Options configure the API.
type Options struct {
	// Token is the bearer token; empty refuses every authenticated route.
	Token        secret.String
	Version      string
	MaxBodyBytes int64 // default 1 MiB
	Logger       *slog.Logger
	// Gatherer serves /metrics; nil serves an empty registry.
	Gatherer prometheus.Gatherer
	// Registerer takes the API's own collectors (metrics.go); nil
	// registers them nowhere.
	Registerer prometheus.Registerer
	// Now is the clock of uptime and of failed-authentication holds;
	// default time.Now.
	Now func() time.Time
	// Feedback, when set, adds the account's bounce collection state
	// ("feedback") to its status; false leaves it out.
	Feedback func(a *account.Account) (any, bool)
}

// API is the admin HTTP handler.
type API struct {
	b       Backend
	o       Options
	log     *slog.Logger
	started time.Time
	mux     *http.ServeMux
	writeMu sync.Mutex // one file edit + reload at a time, in request order
	token   [sha256.Size]byte
	fails   *authFailures
	metrics *metrics
}

// New returns the admin API handler.
func New(b Backend, o Options) *API {
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &API{b: b, o: o, log: o.Logger, started: o.Now(), mux: http.NewServeMux(),
		fails: newAuthFailures(o.Now, o.Logger), metrics: newMetrics(o.Registerer)}
	a.token = sha256.Sum256([]byte(o.Token.Reveal()))

	a.mux.HandleFunc("GET /health", a.health)
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))

	a.handle("GET /admin/accounts", a.listAccounts)
	a.handle("POST /admin/accounts", a.addAccount)
	a.handle("POST /admin/accounts/batch", a.addBatch)
	a.handle("DELETE /admin/accounts", a.deleteAll)
	a.handle("DELETE /admin/accounts/invalid", a.deleteInvalid)
	a.handle("GET /admin/accounts/{email}", a.getAccount)
	a.handle("PATCH /admin/accounts/{email}", a.patchAccount)
	a.handle("DELETE /admin/accounts/{email}", a.deleteAccount)
	a.handle("POST /admin/accounts/{email}/refresh", a.refreshAccount)
	a.handle("POST /admin/accounts/{email}/disable", a.disableAccount)
	a.handle("POST /admin/accounts/{email}/enable", a.enableAccount)
	a.handle("POST /admin/reload", a.reload)
	a.handle("GET /admin/status", a.status)
	a.handle("GET /admin/budgets", a.budgets)
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// handle registers an authenticated route with a bounded body.
func (a *API) handle(pattern string, h http.HandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if a.o.Token.Empty() {
			fail(w, http.StatusForbidden, "admin API disabled: no admin token configured; set one with --admin-token-file FILE or the XOAUTH2_PROXY_ADMIN_TOKEN environment variable")
			return
		}
		if !a.authorized(w, r) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, a.o.MaxBodyBytes)
		h(w, r)
	})
}

// authorized checks the bearer token, unless the client's address is held
// back after repeated failures (authfail.go), and answers the request
// itself when it fails.
func (a *API) authorized(w http.ResponseWriter, r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		got = "" // a bare token without the scheme is no bearer token
	}
	var held *HeldError
	switch err := a.CheckToken(r, got); {
	case err == nil:
		return true
	case errors.As(err, &held):
		secs := strconv.Itoa(int(math.Ceil(held.RetryAfter.Seconds())))
		w.Header().Set("Retry-After", secs)
		fail(w, http.StatusTooManyRequests, "too many failed authentications from this address; retry in "+secs+" s")
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="xoauth2-proxy"`)
		fail(w, http.StatusUnauthorized, "missing or wrong bearer token")
	}
	return false
}

func (a *API) health(w http.ResponseWriter, _ *http.Request) {
	// The old tool's static answer, kept for existing monitors.
	writeJSON(w, http.StatusOK, map[string]any{"status": "healthy", "service": "xoauth2-proxy-admin"})
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "alive"})
}

func (a *API) readyz(w http.ResponseWriter, _ *http.Request) {
	if !a.b.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready"})
		return
	}
	body := map[string]any{"status": "ready"}
	if d, ok := a.b.(interface{ ReadyDetail() map[string]any }); ok {
		maps.Copy(body, d.ReadyDetail()) // cluster mode: Redis state, live proxies, slots held
	}
	writeJSON(w, http.StatusOK, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"success": false, "error": msg})
}

// decode reads a JSON body into v, with the errors an API client needs.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(w, http.StatusRequestEntityTooLarge, "request body too large")
		} else {
			fail(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		}
		return false
	}
	return true
}

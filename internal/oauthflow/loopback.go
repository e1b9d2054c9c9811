package oauthflow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Prompt is where Loopback talks to the user: Show gets the address to
// open (and the redirect URI the paste must come from); Paste, when not
// nil, is read line by line for the address a browser elsewhere ended on.
// A Paste with SetReadDeadline (a terminal, a pipe) is interrupted when
// Loopback returns; another reader's pending read is left to end at EOF.
type Prompt struct {
	Show  func(authURL string)
	Paste io.Reader
}

var loopbackPage = template.Must(template.New("done").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>xoauth2-proxy</title></head>
<body><p>{{.}}</p></body></html>`))

// Loopback runs the authorization code flow on this machine (RFC 8252):
// a one-shot HTTP server on 127.0.0.1 at a random port receives the
// redirect; or the user pastes the address the browser ended on. The
// state is checked, the code exchanged with the PKCE verifier.
func (a App) Loopback(ctx context.Context, loginHint string, p Prompt) (Grant, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return Grant{}, fmt.Errorf("loopback redirect listener: %w", err)
	}
	redirectURI := "http://127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/callback"
	req, err := a.Start(redirectURI, loginHint)
	if err != nil {
		ln.Close()
		return Grant{}, err
	}
	got := make(chan Callback, 2)
	offer := func(cb Callback) {
		select {
		case got <- cb:
		default:
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		cb, err := CallbackFromQuery(r.URL.Query())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case err != nil:
			w.WriteHeader(http.StatusBadRequest)
			_ = loopbackPage.Execute(w, "This address is not an authorization answer.")
			return
		case cb.Error != "":
			_ = loopbackPage.Execute(w, "The provider answered: "+cb.Error+". Return to the terminal.")
		default:
			_ = loopbackPage.Execute(w, "Consent received. You can close this tab and return to the terminal.")
		}
		offer(cb)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	defer func() {
		srv.Close()
		wg.Wait()
	}()

	pasteErr := make(chan error, 1)
	if p.Paste != nil {
		type deadliner interface{ SetReadDeadline(time.Time) error }
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(p.Paste)
			sc.Buffer(make([]byte, 0, 4096), 64<<10)
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if line == "" {
					continue
				}
				cb, err := ParseCallback(line)
				if err != nil {
					pasteErr <- fmt.Errorf("the pasted address: %w", err)
					return
				}
				offer(cb)
				return
			}
		}()
		if d, ok := p.Paste.(deadliner); ok && d.SetReadDeadline(time.Time{}) == nil {
			defer func() {
				_ = d.SetReadDeadline(time.Now())
				<-done
			}()
		}
	}
	if p.Show != nil {
		p.Show(req.URL)
	}
	select {
	case <-ctx.Done():
		return Grant{}, fmt.Errorf("waiting for consent: %w", context.Cause(ctx))
	case err := <-pasteErr:
		return Grant{}, err
	case cb := <-got:
		g, err := a.Finish(ctx, req, cb)
		if errors.Is(err, ErrStateMismatch) {
			return Grant{}, fmt.Errorf("%w (an answer to another authorization, or a forged one)", err)
		}
		return g, err
	}
}

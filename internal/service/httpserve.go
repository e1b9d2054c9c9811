package service

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
)

// serveHTTP serves hs on ln (over TLS when certFile is set) for the admin
// API and the onboarding listener; the returned function shuts it down
// within adminShutdownTimeout and waits for every connection's
// goroutine, which Serve starts and http.Server never waits for (the
// count is hs.ConnState's, set here).
func (s *Service) serveHTTP(name string, ln net.Listener, hs *http.Server, certFile, keyFile string) (stop func()) {
	var conns sync.WaitGroup
	hs.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			conns.Done()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		if certFile != "" {
			err = hs.ServeTLS(ln, certFile, keyFile)
		} else {
			err = hs.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error(name+" stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			// Shutdown leaves open what is not idle at its deadline: a
			// request still running, or a connection that never sent
			// one, which net/http counts as busy for its first 5 seconds
			// (golang/go#22682) and which http.Transport dials as a spare
			// under concurrent requests. Close them, or their goroutines
			// outlive Run.
			s.log.Warn(name+" shutdown deadline passed; closing its connections", "err", err)
			_ = hs.Close()
		}
		<-done
		conns.Wait()
	}
}

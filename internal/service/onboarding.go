package service

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/onboarding"
)

// newOnboarding builds the invitations' Manager when the config has an
// onboarding listener; nil otherwise. Its grants go to accounts.json and
// are followed by a reload, which lifts the account's needs_consent.
func (s *Service) newOnboarding() (*onboarding.Manager, error) {
	snap := s.Snapshot()
	ob := snap.Global.Onboarding
	if ob.Listen == "" {
		return nil, nil
	}
	if ob.Listen == s.opts.Admin.Listen && !strings.HasSuffix(ob.Listen, ":0") {
		return nil, fmt.Errorf("onboarding.listen %s is the admin address: the public listener must be another one", ob.Listen)
	}
	state := ob.StateFile
	if state == "" {
		state = filepath.Join(filepath.Dir(snap.AccountsPath), "invitations.json")
	}
	m, err := onboarding.New(onboarding.Options{
		StatePath:  state,
		PublicURL:  ob.PublicURL,
		TTL:        ob.InvitationTTL,
		Snapshot:   s.Snapshot,
		Grants:     onboarding.FileStore{AccountsPath: snap.AccountsPath, ConfigPath: snap.ConfigPath},
		AfterGrant: func(context.Context) error { return s.Reload() },
		HTTPClient: s.opts.HTTPClient,
		Logger:     s.log.With("component", "onboarding"),
	})
	if err != nil {
		return nil, err
	}
	if err := s.metrics.Register(m.Collector()); err != nil {
		return nil, fmt.Errorf("onboarding metrics: %w", err)
	}
	return m, nil
}

// startOnboarding serves the public onboarding listener; the returned
// function stops it and waits.
func (s *Service) startOnboarding(m *onboarding.Manager) (func(), error) {
	if m == nil {
		return func() {}, nil
	}
	ob := s.Snapshot().Global.Onboarding
	ln, err := net.Listen("tcp", ob.Listen)
	if err != nil {
		return nil, fmt.Errorf("onboarding listen %s: %w", ob.Listen, err)
	}
	s.snapMu.Lock()
	s.onboardingAddr = ln.Addr()
	s.snapMu.Unlock()
	hs := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second, // the callback exchanges the code and reloads
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
	}
	stop := s.serveHTTP("onboarding listener", ln, hs, ob.TLSCertFile, ob.TLSKeyFile) // httpserve.go
	s.log.Info("onboarding listening", "addr", ln.Addr().String(), "public_url", ob.PublicURL, "tls", ob.TLSCertFile != "")
	return stop, nil
}

// OnboardingAddr is the onboarding listener's address once Run serves it,
// or nil.
func (s *Service) OnboardingAddr() net.Addr {
	s.snapMu.RLock()
	defer s.snapMu.RUnlock()
	return s.onboardingAddr
}

package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// The client-facing listener's TLS, PROXY protocol, limits and timeouts
// (issue "Hostile input, faults and overload").

// listenerConfig adds the listener settings of g to cfg and loads the
// listener certificate, if one is configured.
func (s *Service) listenerConfig(cfg *smtpd.Config, g config.Global) error {
	l := g.Listener
	cfg.Trusted = g.SMTP.TrustedNetworks
	if cfg.Trusted == nil {
		cfg.Trusted = []netip.Prefix{} // config's "no network": smtpd reads nil as loopback
	}
	if l.ProxyProtocol {
		cfg.ProxyProtocol = l.ProxyProtocolNetworks
	}
	cfg.MaxConnectionsPerIP = l.MaxConnectionsPerIP
	cfg.MaxBadCommands = l.MaxBadCommands
	cfg.MaxAuthFailuresPerIP = l.MaxAuthFailuresPerIP
	cfg.MaxAuthFailuresPerUser = l.MaxAuthFailuresPerUser
	cfg.TrustedAuthFailuresPerIP = l.TrustedAuthFailuresPerIP
	cfg.TrustedAuthFailuresPerUser = l.TrustedAuthFailuresPerUser
	cfg.MaxAuthChecks = l.MaxAuthChecks
	cfg.AuthTimeout = l.AuthTimeout
	cfg.AuthQueueTimeout = l.AuthQueueTimeout
	cfg.MaxCommandBytes = l.MaxCommandLineBytes
	cfg.MaxAuthBytes = l.MaxAuthLineBytes
	cfg.CommandTimeout = l.CommandTimeout
	cfg.DataBlockTimeout = l.DataBlockTimeout
	cfg.DataTimeout = l.DataTimeout
	cfg.HandshakeTimeout = l.HandshakeTimeout
	if l.TLSCertFile == "" {
		if !loopbackListen(s.opts.Listen) {
			s.log.Warn("no tls_cert_file: the listener offers no STARTTLS, so clients outside trusted_networks cannot AUTH",
				"listen", s.opts.Listen)
		}
		return nil
	}
	kp, err := smtpd.LoadKeyPair(l.TLSCertFile, l.TLSKeyFile)
	if err != nil {
		return err
	}
	s.keyPair = kp
	cfg.TLSConfig = kp.TLSConfig()
	s.log.Info("listener TLS", "cert", l.TLSCertFile, "starttls", true)
	return nil
}

func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && config.IsLoopbackHost(host)
}

// listenTLS opens the implicit TLS listener on the SMTP listener's host,
// at Options.TLSPort or else tls_port; neither set means none.
func (s *Service) listenTLS(g config.Global) error {
	port := s.opts.TLSPort
	if port == 0 {
		port = g.Listener.TLSPort
	}
	if port == 0 {
		return nil
	}
	if s.keyPair == nil {
		return errors.New("--tls-port / tls_port: needs tls_cert_file and tls_key_file in config.json")
	}
	host, _, err := net.SplitHostPort(s.opts.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.opts.Listen, err)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if port < 0 { // tests: any free port
		addr = net.JoinHostPort(host, "0")
	}
	s.tlsLn, err = net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s (implicit TLS): %w", addr, err)
	}
	return nil
}

// serveTLS runs the implicit TLS listener, if any, until ctx ends.
func (s *Service) serveTLS(ctx context.Context, wg *sync.WaitGroup) {
	if s.tlsLn == nil {
		return
	}
	s.log.Info("listening", "smtps", s.tlsLn.Addr().String())
	wg.Go(func() {
		if err := s.srv.ServeTLS(ctx, s.tlsLn); !errors.Is(err, smtpd.ErrServerClosed) {
			s.log.Error("implicit TLS listener stopped", "err", err)
		}
	})
}

// TLSAddr is the implicit TLS listener's address; nil without one.
func (s *Service) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// ReloadTLS reads the listener certificate and key files again (SIGHUP).
// New handshakes use the new certificate; established connections keep
// theirs. On error the current certificate stays. Without listener TLS it
// does nothing.
func (s *Service) ReloadTLS() error {
	if s.keyPair == nil {
		return nil
	}
	if err := s.keyPair.Reload(); err != nil {
		s.log.Error("listener certificate reload failed; keeping the current one", "err", err)
		return err
	}
	s.log.Info("listener certificate reloaded")
	return nil
}

// Server returns the SMTP server, for its Stats.
func (s *Service) Server() *smtpd.Server { return s.srv }

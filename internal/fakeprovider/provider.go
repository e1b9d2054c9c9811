package fakeprovider

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by WaitMessages when the provider is closed before
// enough messages arrived.
var ErrClosed = errors.New("fakeprovider: closed")

// Defaults for zero Options fields.
const (
	DefaultAccessTokenTTL   = time.Hour
	DefaultMaxAuthLineBytes = 1000     // PROVIDERS.md: Gmail rejects AUTH lines of about 1,000+ bytes
	DefaultMaxMessageBytes  = 35882577 // PROVIDERS.md: Gmail's SIZE
	defaultAddr             = "127.0.0.1:0"
)

// Options configure a Provider. The zero value is a plain Gmail-like
// provider on loopback without TLS.
type Options struct {
	// Logger receives one info line per AUTH and per message; nil discards.
	Logger *slog.Logger
	// AccessTokenTTL is the lifetime of issued access tokens; 0 means 1h.
	AccessTokenTTL time.Duration
	// RotateRefreshTokens makes every refresh return a new refresh_token
	// and kill the old one (Microsoft; PROVIDERS.md).
	RotateRefreshTokens bool
	// TLSConfig, when set, makes the SMTP server offer STARTTLS (or speak
	// TLS from the first byte with ImplicitTLS).
	TLSConfig *tls.Config
	// ImplicitTLS starts TLS on connect, like port 465; needs TLSConfig.
	ImplicitTLS bool
	// RequireTLSForAuth advertises and accepts AUTH only on a TLS
	// connection, like Microsoft.
	RequireTLSForAuth bool
	// NoPipelining leaves PIPELINING out of the EHLO reply.
	NoPipelining bool
	// Chunking offers CHUNKING (RFC 3030 BDAT), as Gmail and Exchange
	// Online do. Off by default, so that the DATA-stage faults of the
	// tests (chosen by recipient) meet the DATA command they name.
	Chunking bool
	// No8BITMIME leaves 8BITMIME out of the EHLO reply, and MAIL FROM
	// with a BODY= parameter then gets 555 5.5.4 (RFC 6152 §2: a client
	// must not use it unless offered).
	No8BITMIME bool
	// NoSMTPUTF8 leaves SMTPUTF8 out of the EHLO reply, and MAIL FROM
	// with SMTPUTF8 then gets 555 5.5.4 (RFC 6531 §3.4).
	NoSMTPUTF8 bool
	// MaxSessionsPerUser caps concurrent authenticated sessions per
	// mailbox; AUTH above it gets Microsoft's 432 4.3.2. 0 means no cap.
	MaxSessionsPerUser int
	// MaxAuthLineBytes is the longest AUTH command line accepted, CRLF not
	// counted; longer ones get Gmail's 555 5.5.2. 0 means 1000.
	MaxAuthLineBytes int
	// DiscardBodies keeps only the size and SHA-256 of each message, not
	// its bytes (Message.Data is nil). For the benchmark.
	DiscardBodies bool
	// MaxMessageBytes is the SIZE advertised and enforced; 0 means
	// 35882577 (Gmail).
	MaxMessageBytes int64
	// SMTPAddr and TokenAddr are the listen addresses; "" means
	// "127.0.0.1:0".
	SMTPAddr, TokenAddr string
	// SessionFault, when set, is called once per SMTP connection with its
	// sequence number (1, 2, ...) and returns the failure that session
	// suffers before any mail transaction (doc.go, "Session faults"); the
	// zero Fault is none. It is called from the connection's goroutine.
	SessionFault func(conn int64) Fault
	// TrickleInterval is the pause between the bytes of a trickled reply
	// (ActTrickle, the trickle@ address); 0 means 1s.
	TrickleInterval time.Duration
}

// Account is a mailbox the provider knows.
type Account struct {
	Email    string // the mailbox; XOAUTH2 user= must match it, case-insensitively
	ClientID string // "" accepts any client_id
	// ClientSecret must match the request's secret; "" is a public client
	// whose secret is not checked.
	ClientSecret string
	// RefreshToken is the initial refresh token; "" generates one (read it
	// back with Provider.RefreshToken).
	RefreshToken string
}

// Message is one delivered message: DATA ended with a 250, or with the
// drop-after-dot injection.
type Message struct {
	ID         string   // the id in the 250 reply
	AuthUser   string   // the account's Email as given to AddAccount
	AuthMech   string   // the session's SASL mechanism: "XOAUTH2" or "OAUTHBEARER"
	From       string   // reverse path without brackets; "" for <>
	Rcpts      []string // forward paths without brackets, in order
	MailParams []string // ESMTP parameters of MAIL FROM as sent, e.g. "BODY=8BITMIME"
	// Data is the content after dot-unstuffing, CRLF line ends kept
	// (including the last line's), the final "." CRLF removed. nil with Options.DiscardBodies.
	Data   []byte
	Size   int      // len of the content, also with DiscardBodies
	SHA256 [32]byte // of the content
}

// Stats are counters since Start.
type Stats struct {
	Connections    int64 // SMTP connections accepted
	Logins         int64 // successful AUTH
	LoginFailures  int64 // failed AUTH, including the session-cap 432
	Messages       int64 // delivered messages
	Recipients     int64 // recipients of delivered messages
	TokenRequests  int64 // requests to the token endpoint, any outcome
	TokenRefreshes int64 // access tokens issued
	// MaxConcurrentSessionsPerUser is the peak number of authenticated
	// sessions one mailbox had at once, over all mailboxes.
	MaxConcurrentSessionsPerUser int64
	// TLSHandshakes and TLSResumed count TLS sessions, and those resumed
	// from a session ticket (no full handshake).
	TLSHandshakes, TLSResumed int64
	// SessionFaults counts the times a session fault struck
	// (Options.SessionFault; a Repeat fault counts each time).
	SessionFaults int64
	// Quits counts sessions the client ended with QUIT (not a plain close).
	Quits int64
	// ChunkedMessages counts delivered messages that came with BDAT.
	ChunkedMessages int64
}

// Provider is a running fake provider. Create it with Start.
type Provider struct {
	opts    Options
	log     *slog.Logger
	done    chan struct{} // closed by Close
	smtpLn  net.Listener
	tokenLn net.Listener
	http    *http.Server
	wg      sync.WaitGroup // accept loop, HTTP server, SMTP sessions
	httpWG  sync.WaitGroup // HTTP connections, counted by ConnState

	connSeq         atomic.Int64
	tlsHandshakes   atomic.Int64
	tlsResumed      atomic.Int64
	connections     atomic.Int64
	logins          atomic.Int64
	loginFailures   atomic.Int64
	tokenRequests   atomic.Int64
	tokenRefreshes  atomic.Int64
	sessionFaults   atomic.Int64
	quits           atomic.Int64
	chunkedMessages atomic.Int64 // delivered with BDAT

	mu           sync.Mutex
	closed       bool
	conns        map[net.Conn]struct{}  // raw connections of both servers
	smtpConns    map[net.Conn]struct{}  // the SMTP ones among them
	accounts     map[string]*account    // by lower-cased email
	refreshOwner map[string]string      // every refresh token ever issued → account key
	access       map[string]accessToken // live access tokens
	issued       []string               // every access token ever issued
	tokenDown    bool                   // SetTokenEndpointDown
	grants       grantState             // service accounts, apps, token faults (grants.go)
	consent      consentState           // authorization codes, device codes (consent.go)
	sessions     map[string]int         // authenticated sessions by account key
	peakSessions int64                  // Stats.MaxConcurrentSessionsPerUser
	messages     []Message              // delivered, in order
	recipients   int64                  // Stats.Recipients
	msgSignal    chan struct{}          // closed at the next delivery; nil when nobody waits
}

type account struct {
	Account
	revoked bool
}

type accessToken struct {
	key     string // account key; "" for an app-only token
	app     string // client id of a client_credentials token (grants.go); "" otherwise
	expires time.Time
}

// Start listens on both addresses and serves until Close.
func Start(opts Options) (*Provider, error) {
	if opts.ImplicitTLS && opts.TLSConfig == nil {
		return nil, errors.New("fakeprovider: ImplicitTLS needs TLSConfig")
	}
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if opts.MaxAuthLineBytes <= 0 {
		opts.MaxAuthLineBytes = DefaultMaxAuthLineBytes
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.SMTPAddr == "" {
		opts.SMTPAddr = defaultAddr
	}
	if opts.TokenAddr == "" {
		opts.TokenAddr = defaultAddr
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	smtpLn, err := net.Listen("tcp", opts.SMTPAddr)
	if err != nil {
		return nil, fmt.Errorf("fakeprovider: listen smtp: %w", err)
	}
	tokenLn, err := net.Listen("tcp", opts.TokenAddr)
	if err != nil {
		smtpLn.Close()
		return nil, fmt.Errorf("fakeprovider: listen token: %w", err)
	}
	p := &Provider{
		opts:         opts,
		log:          log,
		done:         make(chan struct{}),
		smtpLn:       smtpLn,
		tokenLn:      tokenLn,
		conns:        make(map[net.Conn]struct{}),
		smtpConns:    make(map[net.Conn]struct{}),
		accounts:     make(map[string]*account),
		refreshOwner: make(map[string]string),
		access:       make(map[string]accessToken),
		sessions:     make(map[string]int),
	}
	p.http = p.newTokenServer()
	p.wg.Go(p.acceptSMTP)
	p.wg.Go(func() {
		// Serve returns ErrServerClosed after Close; nothing to report.
		_ = p.http.Serve(trackedListener{Listener: tokenLn, p: p})
	})
	return p, nil
}

// Close stops both servers, closes every open connection, and waits for
// all goroutines to finish. Later calls do nothing.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()

	err := p.smtpLn.Close()
	if herr := p.http.Close(); err == nil {
		err = herr
	}
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
	p.httpWG.Wait()
	return err
}

// SMTPAddr is the SMTP server's host:port.
func (p *Provider) SMTPAddr() string { return p.smtpLn.Addr().String() }

// TokenURL is the token endpoint, "http://127.0.0.1:N/token".
func (p *Provider) TokenURL() string { return "http://" + p.tokenLn.Addr().String() + "/token" }

// AddAccount adds a mailbox, or replaces the one with the same email
// (which clears a Revoke).
func (p *Provider) AddAccount(a Account) {
	if a.RefreshToken == "" {
		a.RefreshToken = newToken("1//fake-")
	}
	key := strings.ToLower(a.Email)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accounts[key] = &account{Account: a}
	p.refreshOwner[a.RefreshToken] = key
}

// Revoke kills the account's refresh token: the token endpoint answers it
// with 400 invalid_grant until AddAccount is called again.
func (p *Provider) Revoke(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a := p.accounts[strings.ToLower(email)]; a != nil {
		a.revoked = true
	}
}

// ExpireAccessTokens invalidates every access token issued so far. New
// AUTH attempts with them get the 334 failure challenge; sessions already
// authenticated go on.
func (p *Provider) ExpireAccessTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.access)
}

// IssuedAccessTokens returns every access token issued so far, so tests
// can check that none of them leaked into logs or replies.
func (p *Provider) IssuedAccessTokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

// SetTokenEndpointDown makes the token endpoint answer 503 while down.
func (p *Provider) SetTokenEndpointDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenDown = down
}

// RefreshToken is the account's current refresh token (after rotations),
// or "" for an unknown account.
func (p *Provider) RefreshToken(email string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a := p.accounts[strings.ToLower(email)]; a != nil {
		return a.RefreshToken
	}
	return ""
}

// Messages returns the delivered messages in order. The slice is a copy;
// the messages' byte slices are shared and must not be modified.
func (p *Provider) Messages() []Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Message(nil), p.messages...)
}

// Stats returns the counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	peak, msgs, rcpts := p.peakSessions, int64(len(p.messages)), p.recipients
	p.mu.Unlock()
	return Stats{
		Connections:                  p.connections.Load(),
		Logins:                       p.logins.Load(),
		LoginFailures:                p.loginFailures.Load(),
		Messages:                     msgs,
		Recipients:                   rcpts,
		TokenRequests:                p.tokenRequests.Load(),
		TokenRefreshes:               p.tokenRefreshes.Load(),
		MaxConcurrentSessionsPerUser: peak,
		TLSHandshakes:                p.tlsHandshakes.Load(),
		TLSResumed:                   p.tlsResumed.Load(),
		SessionFaults:                p.sessionFaults.Load(),
		Quits:                        p.quits.Load(),
		ChunkedMessages:              p.chunkedMessages.Load(),
	}
}

// WaitMessages returns nil once at least n messages were delivered, the
// context's error when it ends first, or ErrClosed after Close.
func (p *Provider) WaitMessages(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		if len(p.messages) >= n {
			p.mu.Unlock()
			return nil
		}
		if p.msgSignal == nil {
			p.msgSignal = make(chan struct{})
		}
		ch := p.msgSignal
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return ErrClosed
		}
	}
}

// deliver records a message and wakes WaitMessages.
func (p *Provider) deliver(m Message) {
	p.mu.Lock()
	p.messages = append(p.messages, m)
	p.recipients += int64(len(m.Rcpts))
	if p.msgSignal != nil {
		close(p.msgSignal)
		p.msgSignal = nil
	}
	p.mu.Unlock()
}

// track registers a raw connection so Close can close it; it reports false
// when the provider is already closed.
func (p *Provider) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Provider) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.smtpConns, c)
	p.mu.Unlock()
}

// DropConnections closes every open SMTP connection without a word, as a
// provider restart or a NAT timeout would: clients find out on next use.
func (p *Provider) DropConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.smtpConns {
		c.Close()
	}
}

// acquireSession counts an authenticated session for the account key; it
// reports false when the account is at Options.MaxSessionsPerUser.
func (p *Provider) acquireSession(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.sessions[key]
	if limit := p.opts.MaxSessionsPerUser; limit > 0 && n >= limit {
		return false
	}
	n++
	p.sessions[key] = n
	p.peakSessions = max(p.peakSessions, int64(n))
	return true
}

func (p *Provider) releaseSession(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.sessions[key] - 1; n > 0 {
		p.sessions[key] = n
	} else {
		delete(p.sessions, key)
	}
}

// checkAccess reports the account a valid, unexpired access token belongs
// to. user must name that account unless userOptional and empty.
func (p *Provider) checkAccess(user, token string, userOptional bool) (*account, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.access[token]
	if !ok || !time.Now().Before(at.expires) {
		return nil, false
	}
	if at.app != "" {
		// An app-only token is good for any mailbox the app may send as.
		return p.appMailboxLocked(at.app, user)
	}
	a := p.accounts[at.key]
	if a == nil {
		return nil, false
	}
	if user == "" && userOptional {
		return a, true
	}
	return a, strings.EqualFold(user, a.Email)
}

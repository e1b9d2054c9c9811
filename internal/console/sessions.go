package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// sessions is the server-side store of signed-in browsers, bounded: at
// its cap, expired sessions go first, then the oldest. The cookie holds a
// random id; the store keeps only its hash, so neither a timing of map
// lookups nor a dump of the store gives a usable cookie.
type sessions struct {
	now func() time.Time
	ttl time.Duration
	max int

	mu sync.Mutex
	by map[[sha256.Size]byte]*session
}

// session is one signed-in browser.
type session struct {
	csrf    string // the token every state-changing request must carry
	created time.Time
	expires time.Time
}

func newSessions(now func() time.Time, ttl time.Duration, max int) *sessions {
	return &sessions{now: now, ttl: ttl, max: max, by: map[[sha256.Size]byte]*session{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand: Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session and returns the cookie value.
func (s *sessions) create() (id string, sess session) {
	id = randomToken()
	now := s.now()
	sess = session{csrf: randomToken(), created: now, expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.by) >= s.max {
		s.evict(now)
	}
	s.by[sha256.Sum256([]byte(id))] = &sess
	return id, sess
}

// evict drops the expired sessions, and the oldest when none expired.
// The caller holds s.mu.
func (s *sessions) evict(now time.Time) {
	var oldestKey [sha256.Size]byte
	var oldest *session
	for k, v := range s.by {
		if !now.Before(v.expires) {
			delete(s.by, k)
			continue
		}
		if oldest == nil || v.created.Before(oldest.created) {
			oldestKey, oldest = k, v
		}
	}
	if len(s.by) >= s.max && oldest != nil {
		delete(s.by, oldestKey)
	}
}

// get returns the live session of a cookie value.
func (s *sessions) get(id string) (session, bool) {
	if id == "" {
		return session{}, false
	}
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.by[key]
	if v == nil {
		return session{}, false
	}
	if !s.now().Before(v.expires) {
		delete(s.by, key)
		return session{}, false
	}
	return *v, true
}

// end forgets a session (sign-out).
func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.by, sha256.Sum256([]byte(id)))
	s.mu.Unlock()
}

// len is the number of sessions held.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.by)
}

// csrfOK compares a presented CSRF token with the session's in constant
// time.
func csrfOK(sess session, presented string) bool {
	a := sha256.Sum256([]byte(sess.csrf))
	b := sha256.Sum256([]byte(presented))
	return presented != "" && subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

package console

import (
	"sync"
	"testing"
	"time"
)

// TestSessions: bounded (the oldest goes at the cap), expiring, ended by
// sign-out, and a CSRF token compared exactly.
func TestSessions(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := newSessions(clock, time.Hour, 3)

	var ids []string
	for range 5 {
		id, _ := s.create()
		ids = append(ids, id)
		advance(time.Second)
	}
	if s.len() != 3 {
		t.Fatalf("%d sessions held, want the cap 3", s.len())
	}
	for i, id := range ids {
		if _, ok := s.get(id); ok != (i >= 2) {
			t.Errorf("session %d live %v, want %v (the oldest go first)", i, ok, i >= 2)
		}
	}
	sess, ok := s.get(ids[4])
	if !ok || !csrfOK(sess, sess.csrf) || csrfOK(sess, sess.csrf[:len(sess.csrf)-1]) || csrfOK(sess, "") {
		t.Error("CSRF comparison")
	}
	if other, _ := s.get(ids[3]); csrfOK(sess, other.csrf) {
		t.Error("another session's CSRF token accepted")
	}
	s.end(ids[4])
	if _, ok := s.get(ids[4]); ok {
		t.Error("session live after sign-out")
	}
	if _, ok := s.get(""); ok {
		t.Error("empty cookie accepted")
	}
	advance(time.Hour)
	if _, ok := s.get(ids[3]); ok {
		t.Error("session live after its hour")
	}
	// Expired ones make room before live ones are dropped.
	var fresh []string
	for range 4 {
		id, _ := s.create()
		fresh = append(fresh, id)
		advance(time.Second) // distinct ages: the oldest is well defined
	}
	for i, id := range fresh {
		if _, ok := s.get(id); ok != (i >= 1) {
			t.Errorf("new session %d live %v", i, ok)
		}
	}
}

package token

import "time"

// Event is the outcome of one token request, for the console's account
// page. It holds no secret: Detail is the failure as Status.LastError
// shows it.
type Event struct {
	At     time.Time
	OK     bool
	Detail string // the failure; "" for a success
}

// historyLen is how many token requests an account remembers.
const historyLen = 8

// history is the last historyLen token requests; its zero value is empty.
// The Source's mu guards it.
type history struct {
	// buf is allocated at the first request: most of 100,000 accounts
	// make one an hour, and an empty ring costs nothing (an inline one,
	// 384 bytes each).
	buf  *[historyLen]Event
	next int
	n    int
}

func (h *history) add(e Event) {
	if h.buf == nil {
		h.buf = new([historyLen]Event)
	}
	h.buf[h.next] = e
	h.next = (h.next + 1) % historyLen
	h.n = min(h.n+1, historyLen)
}

// list returns the events, newest first.
func (h *history) list() []Event {
	out := make([]Event, 0, h.n)
	for i := 1; i <= h.n; i++ {
		out = append(out, h.buf[(h.next-i+historyLen)%historyLen])
	}
	return out
}

// History returns the account's last token requests, newest first.
func (s *Source) History() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hist.list()
}

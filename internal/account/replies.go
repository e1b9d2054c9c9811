package account

import "sync"

// RecentReplies is how many upstream final replies an account keeps for
// the console's account page.
const RecentReplies = 8

// replyRing holds an account's last RecentReplies upstream final replies.
// Safe for concurrent use; its zero value is empty.
type replyRing struct {
	mu   sync.Mutex
	buf  [RecentReplies]*LastReply
	next int // where the next reply goes
	n    int // replies held
}

func (r *replyRing) add(lr *LastReply) {
	r.mu.Lock()
	r.buf[r.next] = lr
	r.next = (r.next + 1) % RecentReplies
	r.n = min(r.n+1, RecentReplies)
	r.mu.Unlock()
}

// list returns the replies held, newest first.
func (r *replyRing) list() []LastReply {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]LastReply, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, *r.buf[(r.next-i+RecentReplies)%RecentReplies])
	}
	return out
}

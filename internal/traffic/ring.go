package traffic

import (
	"sync"
	"time"
)

// Slots is the number of minutes a Ring keeps: one hour.
const Slots = 60

// Totals are message outcomes: accepted (upstream 250), deferred (4xx),
// rejected (5xx).
type Totals struct {
	Accepted int64 `json:"accepted"`
	Deferred int64 `json:"deferred"`
	Rejected int64 `json:"rejected"`
}

func (t Totals) sub(o Totals) Totals {
	return Totals{Accepted: max(t.Accepted-o.Accepted, 0), Deferred: max(t.Deferred-o.Deferred, 0),
		Rejected: max(t.Rejected-o.Rejected, 0)}
}

func (t *Totals) add(o Totals) {
	t.Accepted += o.Accepted
	t.Deferred += o.Deferred
	t.Rejected += o.Rejected
}

// Minute is one minute's outcomes.
type Minute struct {
	Start time.Time `json:"start"`
	Totals
}

// Ring is the last Slots minutes of outcomes. Its zero value is ready.
type Ring struct {
	mu    sync.Mutex
	slots [Slots]slot
	last  Totals // the totals of the latest Sample
}

type slot struct {
	minute int64 // Unix minute the counts belong to
	counts Totals
}

// Sample takes the cumulative totals at now and counts what grew since
// the previous Sample into now's minute. Sample at least once a minute
// (the service does every few seconds); a counter that went down (a
// restart of its source) counts nothing.
func (r *Ring) Sample(now time.Time, cum Totals) {
	m := now.Unix() / 60
	r.mu.Lock()
	defer r.mu.Unlock()
	d := cum.sub(r.last)
	r.last = cum
	s := &r.slots[m%Slots]
	if s.minute != m {
		*s = slot{minute: m}
	}
	s.counts.add(d)
}

// Last returns the Slots minutes that end with now's, oldest first; a
// minute with no sample counts zero.
func (r *Ring) Last(now time.Time) []Minute {
	cur := now.Unix() / 60
	out := make([]Minute, Slots)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range out {
		m := cur - int64(Slots-1-i)
		out[i].Start = time.Unix(m*60, 0).UTC()
		if s := r.slots[((m%Slots)+Slots)%Slots]; s.minute == m {
			out[i].Totals = s.counts
		}
	}
	return out
}

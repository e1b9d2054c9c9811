package quota

import "time"

// window counts events over a rolling span, in buckets.
//
// The ring holds one bucket more than the span needs, so that it errs
// towards holding a count too long, never towards forgetting it early:
// with span/bucket buckets a count made late in its bucket would leave
// when the bucket is a full span old, up to one bucket (1 s, 1 min,
// 10 min) before the count itself is; with one more it leaves between
// one span and one span plus a bucket after it was made. Providers
// count exact rolling windows (PROVIDERS.md), so a budget at the
// provider's limit must not let the next message through a bucket early.
type window struct {
	Bucket int64   `json:"bucket_s"` // seconds per bucket
	Counts []int32 `json:"counts"`   // ring, one per bucket
	Head   int64   `json:"head"`     // absolute index (unix seconds / Bucket) of the newest bucket
}

func newWindow(span, bucket time.Duration) *window {
	b := int64(bucket / time.Second)
	return &window{Bucket: b, Counts: make([]int32, int64(span/time.Second)/b+1)}
}

// widen moves w's counts into a ring of n buckets, keeping Head: state
// saved before the ring had its extra bucket (window) loads unchanged.
func (w *window) widen(n int) {
	old, m := w.Counts, int64(len(w.Counts))
	w.Counts = make([]int32, n)
	for i := max(0, w.Head-m+1); i <= w.Head; i++ {
		w.Counts[i%int64(n)] = old[i%m]
	}
}

// advance moves the ring to now, zeroing buckets that fell out.
func (w *window) advance(now int64) {
	idx := now / w.Bucket
	if idx <= w.Head {
		return
	}
	n := int64(len(w.Counts))
	if idx-w.Head >= n {
		clear(w.Counts)
	} else {
		for i := w.Head + 1; i <= idx; i++ {
			w.Counts[i%n] = 0
		}
	}
	w.Head = idx
}

func (w *window) add(now int64, k int) {
	w.advance(now)
	w.Counts[w.Head%int64(len(w.Counts))] += int32(k)
}

func (w *window) sum(now int64) int {
	w.advance(now)
	s := 0
	for _, c := range w.Counts {
		s += int(c)
	}
	return s
}

// freeIn returns how long until the window's sum drops to need-room below
// limit, i.e. until sum+room <= limit, as the oldest buckets fall out.
func (w *window) freeIn(now int64, limit, room int) time.Duration {
	w.advance(now)
	s := w.sum(now)
	n := int64(len(w.Counts))
	for age := n - 1; age >= 0 && s+room > limit; age-- {
		idx := w.Head - age
		s -= int(w.Counts[((idx%n)+n)%n])
		if s+room <= limit {
			// Bucket idx leaves the window when Head reaches idx+n.
			leave := (idx + n) * w.Bucket
			return time.Duration(leave-now) * time.Second
		}
	}
	return 0
}

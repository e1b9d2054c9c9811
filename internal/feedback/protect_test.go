package feedback_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/feedback"
)

// coolRecorder stands for the account's budget: it records cool-downs.
type coolRecorder struct {
	mu     sync.Mutex
	causes []string
}

func (r *coolRecorder) cool(cause string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.causes = append(r.causes, cause)
	return true
}

func (r *coolRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.causes)
}

// TestProtect_bounceRateCoolsDownAcrossRestart: 6 hard bounces on 100
// accepted recipients (6 % > 5 %) cool the account down with the reason;
// a restarted collector still knows the bounces and does so again; after
// the operator resumes it, the old bounces no longer count, also over a
// restart. Below the minimum of recipients nothing happens.
func TestProtect_bounceRateCoolsDownAcrossRestart(t *testing.T) {
	t.Parallel()
	srv := startIMAP(t)
	for range 6 {
		srv.Deliver(box, sample(t, "rfc3464.eml")) // one hard bounce each
	}
	state := filepath.Join(t.TempDir(), "state.json")
	rec := &coolRecorder{}
	accepted := 100
	m := mailbox(srv)
	m.Accepted = func() (int, bool) { return accepted, true }
	m.CoolDown = rec.cool
	newC := func() *feedback.Collector {
		c, err := feedback.New(feedback.Options{Mailboxes: func() []feedback.Mailbox { return nil }, StatePath: state,
			Threshold: 0.05, MinRecipients: 100})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	accepted = 99 // below the minimum: not judged
	c := newC()
	if err := c.ReadOnce(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	if rec.count() != 0 {
		t.Fatalf("cooled down on %d recipients, below the minimum of 100", accepted)
	}
	accepted = 100
	if err := c.ReadOnce(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	if rec.count() != 1 || !strings.Contains(rec.causes[0], "bounce rate 6.0% (6 hard bounces / 100 recipients in 24h)") {
		t.Fatalf("cool-downs %q", rec.causes)
	}
	if st, _ := c.Status("acct"); !st.CooledDown || st.HardBounces != 6 || st.BounceRate != 0.06 {
		t.Errorf("status %+v", st)
	}

	c = newC() // restart
	if err := c.ReadOnce(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	if rec.count() != 2 {
		t.Fatalf("after a restart the bounces were forgotten: %d cool-downs", rec.count())
	}

	resumed := false
	m.Resume = func() { resumed = true }
	if err := c.Resume(m); err != nil || !resumed {
		t.Fatalf("Resume: %v, resumed %v", err, resumed)
	}
	c = newC() // restart after the resume
	if err := c.ReadOnce(ctx(t), m); err != nil {
		t.Fatal(err)
	}
	if rec.count() != 2 {
		t.Errorf("cooled down again after the operator resumed it: %q", rec.causes)
	}
}

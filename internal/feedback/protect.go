package feedback

import (
	"fmt"
	"time"
)

// window is the span of the bounce rate: the same 24 h as the accepted
// recipients it is divided by (the budget's recipients_per_day window).
const window = 24 * time.Hour

// protect computes m's hard-bounce rate over the last 24 h (hard bounces
// collected since the last resume ÷ recipients accepted) and cools the
// account down, until the operator resumes it, when it is above the
// threshold on at least MinRecipients recipients. The cool-down is a
// quota cool-down: the relay refuses MAIL with 451 4.7.0 and its reason,
// the admin API shows it, and budgets.json keeps it over a restart.
func (c *Collector) protect(m Mailbox) {
	now := c.o.Now()
	p := c.store.get(m.ID)
	hard := 0
	for _, t := range p.Hard {
		if now.Sub(t) < window && !t.Before(p.ResumedAt) {
			hard++
		}
	}
	accepted, known := 0, false
	if m.Accepted != nil {
		accepted, known = m.Accepted()
	}
	rate := 0.0
	if known && accepted > 0 {
		rate = float64(hard) / float64(accepted)
	}
	trip := c.o.Threshold > 0 && known && accepted >= c.o.MinRecipients && rate > c.o.Threshold
	cooled := false
	already := false
	c.setStatus(m.ID, func(s *Status) { already = s.CooledDown })
	if trip && already {
		cooled = true // cooled down at an earlier read of this process: not again, not logged again
	} else if trip && m.CoolDown != nil {
		cause := fmt.Sprintf("bounce rate %.1f%% (%d hard bounces / %d recipients in 24h) over %.1f%%; resume with POST /admin/accounts/%s/feedback/resume",
			rate*100, hard, accepted, c.o.Threshold*100, m.Email)
		cooled = m.CoolDown(cause)
		if cooled {
			c.log.Warn("feedback: account cooled down for its bounce rate", "account", m.ID, "rate", rate, "hard", hard, "accepted", accepted)
		}
	}
	c.o.Metrics.rate(m.ID, rate)
	c.setStatus(m.ID, func(s *Status) {
		s.HardBounces, s.Accepted, s.BounceRate = hard, accepted, rate
		s.CooledDown = cooled
	})
}

// Resume lifts m's bounce-rate cool-down: the hard bounces collected so
// far no longer count, and the cool-down ends.
func (c *Collector) Resume(m Mailbox) error {
	now := c.o.Now()
	if err := c.store.update(m.ID, func(p *progress) { p.ResumedAt, p.Hard = now, nil }); err != nil {
		return err
	}
	if m.Resume != nil {
		m.Resume()
	}
	c.setStatus(m.ID, func(s *Status) { s.CooledDown, s.HardBounces, s.BounceRate = false, 0, 0 })
	return nil
}

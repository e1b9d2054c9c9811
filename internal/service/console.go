package service

import (
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/traffic"
)

// The console.Backend implementation, beside admin.Backend (admin.go).

// MessageTotals implements console.Backend: messages_total's sent,
// deferred and rejected series, read from the registry /metrics serves,
// so that the console and /metrics never disagree.
func (s *Service) MessageTotals() traffic.Totals {
	var t traffic.Totals
	mfs, err := s.metrics.Gather()
	if err != nil {
		s.log.Warn("console: gather metrics", "err", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := int64(m.GetCounter().GetValue())
			for _, l := range m.GetLabel() {
				if l.GetName() != "result" {
					continue
				}
				switch l.GetValue() {
				case "sent":
					t.Accepted = n
				case "deferred":
					t.Deferred = n
				case "rejected":
					t.Rejected = n
				}
			}
		}
	}
	return t
}

// Traffic implements console.Backend: the outcomes per minute over the
// hour ending at now, as Run's sweeper sampled them.
func (s *Service) Traffic(now time.Time) []traffic.Minute {
	s.sampleTraffic(now) // the minute in progress, up to now
	return s.traffic.Last(now)
}

// sampleTraffic counts the outcomes since the last sample into the
// per-minute ring (Run's sweeper, every few seconds, and each read).
func (s *Service) sampleTraffic(now time.Time) { s.traffic.Sample(now, s.MessageTotals()) }

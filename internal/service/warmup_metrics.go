package service

import "github.com/prometheus/client_golang/prometheus"

// warmupCollector reports the accounts in a warm-up ramp
// (rate_limiting.warmup, issue 15): one series per account while its ramp
// lasts, so the label set stays bounded by the accounts warming up.
type warmupCollector struct{ s *Service }

var (
	descWarmupDay       = prometheus.NewDesc("account_warmup_day", "Day of the account's warm-up ramp (1 = the start date), while the ramp lasts.", []string{"account"}, nil)
	descWarmupLimit     = prometheus.NewDesc("account_warmup_daily_limit", "Today's message limit of the account's warm-up ramp.", []string{"account"}, nil)
	descWarmupRemaining = prometheus.NewDesc("account_warmup_remaining", "Messages the account may still send in the rolling 24 h under its warm-up limit.", []string{"account"}, nil)
)

func (c *warmupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWarmupDay
	ch <- descWarmupLimit
	ch <- descWarmupRemaining
}

func (c *warmupCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.Reg == nil {
		return
	}
	for _, a := range c.s.Reg.All() {
		if !a.Cfg.RateLimiting.Warmup.On() {
			continue
		}
		st, ok := a.Budget().Status()
		if !ok || st.Warmup == nil {
			continue
		}
		w := st.Warmup
		ch <- prometheus.MustNewConstMetric(descWarmupDay, prometheus.GaugeValue, float64(w.Day), a.Cfg.ID)
		ch <- prometheus.MustNewConstMetric(descWarmupLimit, prometheus.GaugeValue, float64(w.DailyLimit), a.Cfg.ID)
		ch <- prometheus.MustNewConstMetric(descWarmupRemaining, prometheus.GaugeValue, float64(w.Remaining), a.Cfg.ID)
	}
}

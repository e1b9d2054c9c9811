package bench

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuClock is a reading of the machine's and this process's CPU time, to
// tell how much of the machine other processes used during a window.
type cpuClock struct {
	machineBusy time.Duration // all CPUs, non-idle, since boot
	self        time.Duration // this process, user+system
	ok          bool
}

func readCPUClock() cpuClock {
	var c cpuClock
	self, ok := selfCPU()
	if !ok {
		return c
	}
	c.self = self
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return c
	}
	// proc(5): user nice system idle iowait irq softirq steal ..., in
	// USER_HZ ticks. Busy is everything but idle and iowait; guest time
	// is already inside user.
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return c
		}
		busy += n
	}
	c.machineBusy = time.Duration(busy) * time.Second / clockTicks
	c.ok = true
	return c
}

// usage is how the machine's CPU time in a window was spent, in cores
// (CPU seconds per second).
type usage struct {
	bench, provider, proxy, other float64
}

// cpuUsage splits the CPU time between two readings: this process, the
// proxy and the provider's process (their CPU time in the window, 0 if
// unknown) and everything else.
func cpuUsage(a, b cpuClock, proxyCPU, providerCPU, elapsed time.Duration) (usage, bool) {
	if !a.ok || !b.ok || elapsed <= 0 {
		return usage{}, false
	}
	sec := elapsed.Seconds()
	u := usage{
		bench:    (b.self - a.self).Seconds() / sec,
		proxy:    proxyCPU.Seconds() / sec,
		provider: providerCPU.Seconds() / sec,
	}
	u.other = max(0, (b.machineBusy-a.machineBusy).Seconds()/sec-u.bench-u.proxy-u.provider)
	return u, true
}

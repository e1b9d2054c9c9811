//go:build !unix

package bench

import "time"

// selfCPU is unknown without getrusage(2): the report leaves the CPU split
// out, as it does where /proc/stat is missing.
func selfCPU() (time.Duration, bool) { return 0, false }

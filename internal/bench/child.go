package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// child is a started child process (the proxy, or the fake provider's
// process) whose exit is awaited by one goroutine that the child owns:
// wait and the done channel see its end.
type child struct {
	cmd     *exec.Cmd
	logPath string        // its stderr (and stdout), for error messages
	done    chan struct{} // closed when cmd.Wait returned
	waitErr error
}

func startChild(cmd *exec.Cmd, logPath string) (*child, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { // owned by c: wait (or the process's exit) ends it
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// wait waits up to d for the child to exit, then kills it.
func (c *child) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return c.exitErr()
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("did not stop within %v; killed%s", d, c.logTail())
	}
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *child) exitErr() error {
	if c.waitErr != nil {
		return fmt.Errorf("%w%s", c.waitErr, c.logTail())
	}
	return nil
}

// CPU is the child's user+system CPU time so far.
func (c *child) CPU() (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, false
	}
	// proc(5): after "(comm)" come state (field 3) ... utime (14), stime (15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clockTicks, true
}

// PeakRSS is the child's peak resident set size in bytes (VmHWM).
func (c *child) PeakRSS() (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// logTail is the end of the child's log, for error messages.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nlog (end):\n" + string(b)
}

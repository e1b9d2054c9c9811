// Package logbuf batches log output: one write(2) per flush instead of one
// per line. The proxy logs a line per message; at tens of thousands of
// messages a second the syscalls alone cost about a tenth of its CPU
// (README "Benchmark"). Lines are written whole (one Write is one line from
// log/slog), kept in order, and flushed every interval, when the buffer
// fills, and on Close. What a crash can lose is the last interval's lines.
package logbuf

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Writer buffers writes to an underlying writer. Safe for concurrent use.
type Writer struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// New returns a Writer that flushes to w every interval (default 100ms).
// Close stops its flusher and flushes.
func New(w io.Writer, interval time.Duration) *Writer {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	b := &Writer{bw: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop(interval)
	return b
}

func (b *Writer) loop(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.Flush()
		case <-b.stop:
			return
		}
	}
}

// Write implements io.Writer.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bw.Write(p)
}

// Flush writes out what is buffered.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bw.Flush()
}

// Close stops the flusher and flushes. Writes after Close still reach the
// buffer but are flushed only by an explicit Flush.
func (b *Writer) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	return b.Flush()
}

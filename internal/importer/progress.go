package importer

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Progress shows how far a long step (verifying, uploading) has come. On a
// terminal it redraws one bar in place; elsewhere (a log file, CI) it
// writes a plain line at every tenth, so the output stays readable. A nil
// *Progress shows nothing. Safe for concurrent use.
type Progress struct {
	w     io.Writer
	tty   bool
	label string
	total int

	mu    sync.Mutex
	done  int
	shown int // tenths already printed (plain mode)
}

// barWidth is the number of cells of the terminal bar.
const barWidth = 30

// NewProgress starts a progress display of total steps on w.
func NewProgress(w io.Writer, tty bool, label string, total int) *Progress {
	p := &Progress{w: w, tty: tty, label: label, total: max(total, 1)}
	if tty {
		p.draw()
	}
	return p
}

// Add records n more steps done.
func (p *Progress) Add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = min(p.done+n, p.total)
	if p.tty {
		p.draw()
		return
	}
	if tenth := p.done * 10 / p.total; tenth > p.shown {
		p.shown = tenth
		fmt.Fprintf(p.w, "%s: %d/%d (%d%%)\n", p.label, p.done, p.total, p.done*100/p.total)
	}
}

// Finish ends the display: on a terminal, the line under the bar.
func (p *Progress) Finish() {
	if p == nil || !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w)
}

func (p *Progress) draw() {
	full := p.done * barWidth / p.total
	bar := strings.Repeat("=", full)
	if full < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-full-1)
	}
	fmt.Fprintf(p.w, "\r%s [%s] %d/%d %3d%%", p.label, bar, p.done, p.total, p.done*100/p.total)
}

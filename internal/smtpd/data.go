package smtpd

import (
	"bufio"
	"bytes"
	"io"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// Errors the DATA reader returns; they are the replies the client gets.
var (
	ErrMessageTooBig = reply.New(552, "5.3.4", "Message size exceeds fixed maximum message size")
	ErrLineTooLong   = reply.New(500, "5.5.2", "Message line too long")
)

// dataReader reads a DATA body from the client and yields the message: dot
// stuffing removed, every line ending CRLF. It ends only at
// <CR><LF>.<CR><LF> (RFC 5321 §4.1.1.4). A bare LF or bare CR is taken as
// a line end and written as CRLF; a "." line ended that way is content, not
// the end of data, so "<LF>.<LF>" can never end a message here, and the
// relay's dot-stuffing sends it upstream as "..": no SMTP smuggling.
//
// Limits produce a sticky error (ErrMessageTooBig, ErrLineTooLong); the
// rest of the body must then be consumed with drain so the session stays in
// step with the client.
type dataReader struct {
	br *bufio.Reader
	// wait runs before each blocking read: it pushes pending replies out
	// and sets the read deadline (DataBlockTimeout, DataTimeout).
	wait    func() error
	max     int64 // bytes of message; 0 = unlimited
	maxLine int   // bytes per line, CRLF excluded; 0 = unlimited
	n       int64 // message bytes produced so far
	lineLen int
	state   dataState
	err     error // limit error, sticky
	ioErr   error // connection error
	done    bool
	discard bool // drain mode: consume, produce nothing
	// bare: the last line ended with a bare LF or CR, so a "." line that
	// follows cannot end the data (only CRLF "." CRLF does).
	bare    bool
	scratch []byte // allocated on first use: the common path reads into the caller's buffer
	pend    []byte // produced into scratch, not yet returned
}

type dataState uint8

const (
	stStart dataState = iota // at the start of a line
	stMid                    // inside a line
	stCR                     // after a CR inside a line
	stDot                    // after a leading "."
	stDotCR                  // after a leading ".\r"
)

func newDataReader(br *bufio.Reader, wait func() error, max int64, maxLine int) *dataReader {
	return &dataReader{br: br, wait: wait, max: max, maxLine: maxLine}
}

func (d *dataReader) scratchBuf() []byte {
	if d.scratch == nil {
		d.scratch = make([]byte, 4096)
	}
	return d.scratch
}

// Read implements io.Reader. It returns io.EOF at the end of data, or the
// limit error once a limit is exceeded.
func (d *dataReader) Read(p []byte) (int, error) {
	if len(d.pend) > 0 {
		n := copy(p, d.pend)
		d.pend = d.pend[n:]
		return n, nil
	}
	if len(p) < 4 && len(p) > 0 {
		// step needs room for an expansion: go through scratch.
		n, err := d.Read(d.scratchBuf())
		d.pend = d.scratch[:n]
		if n == 0 {
			return 0, err
		}
		return d.Read(p)
	}
	for {
		switch {
		case d.err != nil:
			return 0, d.err
		case d.ioErr != nil:
			return 0, d.ioErr
		case d.done:
			return 0, io.EOF
		}
		if n := d.step(p); n > 0 {
			return n, nil
		}
	}
}

// drain consumes the rest of the body without producing it.
func (d *dataReader) drain() error {
	d.discard = true
	for !d.done && d.ioErr == nil {
		d.step(d.scratchBuf())
	}
	return d.ioErr
}

// step processes buffered input into p and returns the bytes produced. It
// blocks for input only when nothing is buffered.
func (d *dataReader) step(p []byte) int {
	if d.br.Buffered() == 0 {
		if err := d.wait(); err != nil {
			d.ioErr = err
			return 0
		}
		if _, err := d.br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			d.ioErr = err
			return 0
		}
	}
	in, _ := d.br.Peek(d.br.Buffered())
	w := 0 // bytes written to p
	i := 0 // bytes consumed from in
	emit := func(b []byte) {
		if d.discard || d.err != nil {
			return
		}
		w += copy(p[w:], b)
	}
	// Leave room for the longest expansion (".\r\n" plus one byte).
	for i < len(in) && (d.discard || len(p)-w >= 4) && !d.done {
		c := in[i]
		switch d.state {
		case stStart:
			switch c {
			case '.':
				d.state = stDot
				i++
				continue
			case '\r':
				d.state = stCR
				i++
				continue
			case '\n':
				d.countLine(0)
				emit(crlf)
				d.count(2)
				d.bare = true
				i++
				continue
			}
			d.state = stMid
		case stMid:
			// Fast path: copy a run of ordinary bytes.
			run := in[i:]
			if !d.discard && len(run) > len(p)-w-3 {
				run = run[:len(p)-w-3]
			}
			if j := bytes.IndexByte(run, '\n'); j >= 0 {
				run = run[:j]
			}
			if j := bytes.IndexByte(run, '\r'); j >= 0 {
				run = run[:j]
			}
			if len(run) > 0 {
				emit(run)
				d.count(len(run))
				d.countLine(d.lineLen + len(run))
				i += len(run)
				continue
			}
			switch c {
			case '\r':
				d.state = stCR
			case '\n': // bare LF
				emit(crlf)
				d.count(2)
				d.lineLen = 0
				d.state = stStart
				d.bare = true
			}
			i++
		case stCR:
			emit(crlf)
			d.count(2)
			d.lineLen = 0
			d.state = stStart
			d.bare = c != '\n'
			if c == '\n' {
				i++
			}
			// Otherwise a bare CR: the byte starts the next line.
		case stDot:
			switch c {
			case '\r':
				d.state = stDotCR
				i++
			case '\n':
				// ".<LF>": content, never the end (smuggling).
				emit(dotCRLF)
				d.count(3)
				d.lineLen = 0
				d.state = stStart
				d.bare = true
				i++
			default:
				// RFC 5321 §4.5.2: the leading dot is removed.
				d.state = stMid
			}
		case stDotCR:
			if c == '\n' && !d.bare {
				d.done = true
				i++
				break
			}
			// "<LF>.<CR><LF>" (the line before ended bare) or ".<CR>x" (a
			// bare CR after the dot): a "." line of content, never the end.
			emit(dotCRLF)
			d.count(3)
			d.lineLen = 0
			d.state = stStart
			d.bare = c != '\n'
			if c == '\n' {
				i++
			}
		}
	}
	_, _ = d.br.Discard(i)
	return w
}

var (
	crlf    = []byte("\r\n")
	dotCRLF = []byte(".\r\n")
)

func (d *dataReader) count(n int) {
	d.n += int64(n)
	if d.max > 0 && d.n > d.max && d.err == nil {
		d.err = ErrMessageTooBig
	}
}

func (d *dataReader) countLine(n int) {
	d.lineLen = n
	if d.maxLine > 0 && n > d.maxLine && d.err == nil {
		d.err = ErrLineTooLong
	}
}

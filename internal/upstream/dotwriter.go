package upstream

import (
	"bytes"
	"io"
)

// DotWriter writes a message body in the DATA form of RFC 5321 §4.5.2: a
// line that starts with "." gets another "." in front. Close ends the data
// with ".\r\n", first adding CRLF when the data did not end with one.
//
// The input is expected with CRLF line ends; a "." after any LF is
// stuffed, so even stray bare LFs cannot end the data early. Writes copy
// runs of bytes between stuffing points, and line-start state carries over
// from one Write to the next, so a message may arrive in chunks of any
// size. A DotWriter holds no buffer of its own; give it a buffered writer.
type DotWriter struct {
	w         io.Writer
	bw        io.ByteWriter // w, when it takes single bytes
	lineStart bool          // the next byte begins a line
	wrote     bool          // any data was written
	tail      [2]byte       // the last two data bytes
	dot       [1]byte       // "." for writers without WriteByte; a field, so no allocation per write
}

// NewDotWriter returns a DotWriter writing to w.
func NewDotWriter(w io.Writer) *DotWriter {
	d := &DotWriter{}
	d.Reset(w)
	return d
}

// Reset discards the state and writes to w from now on, as at the start of
// a new message.
func (d *DotWriter) Reset(w io.Writer) {
	*d = DotWriter{w: w, lineStart: true, dot: [1]byte{'.'}}
	d.bw, _ = w.(io.ByteWriter)
}

// Write writes p, dot-stuffed. It returns how many bytes of p were written,
// not counting the added dots.
func (d *DotWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if d.lineStart && p[0] == '.' {
		if err := d.writeDot(); err != nil {
			return 0, err
		}
	}
	lfDot := []byte{'\n', '.'} // where stuffing happens
	start := 0                 // p[start:] is not written yet
	for from := 0; ; {
		i := bytes.Index(p[from:], lfDot)
		if i < 0 {
			break
		}
		end := from + i + 1 // just after the LF
		if _, err := d.w.Write(p[start:end]); err != nil {
			return start, err
		}
		if err := d.writeDot(); err != nil {
			return end, err
		}
		start, from = end, end+1
	}
	if _, err := d.w.Write(p[start:]); err != nil {
		return start, err
	}
	if len(p) >= 2 {
		d.tail = [2]byte{p[len(p)-2], p[len(p)-1]}
	} else {
		d.tail = [2]byte{d.tail[1], p[0]}
	}
	d.wrote = true
	d.lineStart = p[len(p)-1] == '\n'
	return len(p), nil
}

func (d *DotWriter) writeDot() error {
	if d.bw != nil {
		return d.bw.WriteByte('.')
	}
	_, err := d.w.Write(d.dot[:])
	return err
}

// Close writes the end of data: CRLF when the data written so far did not
// end with one, then ".\r\n". It neither flushes nor closes the underlying
// writer.
func (d *DotWriter) Close() error {
	end := ".\r\n"
	if d.wrote && d.tail != [2]byte{'\r', '\n'} {
		end = "\r\n.\r\n"
	}
	_, err := io.WriteString(d.w, end)
	return err
}

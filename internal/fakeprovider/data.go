package fakeprovider

import (
	"bufio"
	"context"
	"errors"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

var errDropInBody = errors.New("drop-in-body")

func (s *session) cmdData(arg string) {
	switch {
	case !s.t.active:
		s.reply(503, "5.5.1", "need MAIL command")
		return
	case len(s.t.rcpts) == 0:
		s.reply(554, "5.5.1", "Error: no valid recipients")
		return
	case arg != "":
		s.reply(501, "5.5.4", "Syntax error, no parameters allowed")
		return
	case s.t.fx.dropAtData:
		s.drop("drop-at-data")
		return
	case s.t.fx.stallAtData:
		s.stall("stall-at-data")
		return
	case s.t.fx.dataCmd != nil:
		r := *s.t.fx.dataCmd
		s.t = txn{}
		s.replyR(r)
		return
	}
	s.reply(354, "", "Go ahead")
	if s.w.Flush() != nil {
		s.closed = true
		return
	}
	b := s.startBody()
	dropAfter := int64(-1)
	if s.t.fx.inBody() {
		dropAfter = dropInBodyBytes
	}
	if err := readBody(s.r, b, dropAfter); err != nil {
		if errors.Is(err, errDropInBody) {
			s.bodyFault()
		}
		s.closed = true
		return
	}
	s.finishMessage()
}

// startBody readies the session's body state for a new message; it lives
// in the session so nothing escapes per message.
func (s *session) startBody() *body {
	s.body = body{h: s.body.h, keep: !s.p.opts.DiscardBodies, max: s.p.opts.MaxMessageBytes}
	s.body.h.Reset()
	return &s.body
}

// inBody reports a fault chosen for the middle of the body.
func (e *effects) inBody() bool { return e.dropInBody || e.stallInBody || e.resetInBody }

// bodyFault strikes the fault chosen for the middle of the body.
func (s *session) bodyFault() {
	switch fx := &s.t.fx; {
	case fx.resetInBody:
		s.reset("reset-in-body")
	case fx.stallInBody:
		s.freeze("stall-in-body")
	default:
		s.drop("drop-in-body")
	}
}

// finishMessage ends the body of the current transaction (after DATA's
// final dot or BDAT LAST) and answers it.
func (s *session) finishMessage() {
	b := &s.body
	b.finish()
	t := s.t
	s.t = txn{}
	if b.over {
		s.reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
		return
	}
	if t.fx.stallAfterDot {
		s.stall("stall-after-dot")
		return
	}
	if t.fx.delay > 0 && !s.sleep(t.fx.delay) {
		return
	}
	if r := t.fx.dataReply; r != nil {
		s.p.log.Info("message rejected", "conn_id", s.id, "account", s.acct.Email, "code", r.Code)
		s.replyR(*r)
		return
	}
	s.nmsg++
	m := Message{
		ID:         s.id + "." + strconv.Itoa(s.nmsg),
		AuthUser:   s.acct.Email,
		AuthMech:   s.mech,
		From:       t.from,
		Rcpts:      t.rcpts,
		MailParams: t.params,
		Data:       b.data,
		Size:       int(b.n),
		SHA256:     [32]byte(b.h.Sum(s.sum[:0])),
	}
	b.data = nil
	if t.bdat {
		s.p.chunkedMessages.Add(1)
	}
	s.p.deliver(m)
	if s.p.log.Enabled(context.Background(), slog.LevelInfo) { // spare the benchmark the argument boxing
		s.p.log.Info("message", "conn_id", s.id, "msg_id", m.ID, "account", m.AuthUser, "size", m.Size, "rcpts", len(m.Rcpts))
	}
	if t.fx.dropAfterDot {
		s.drop("drop-after-dot")
		return
	}
	s.reply(250, "2.0.0", "OK "+m.ID+" - gsmtp")
}

// sleep waits d, or until Close; it reports false when closing.
func (s *session) sleep(d time.Duration) bool {
	if s.w.Flush() != nil {
		s.closed = true
		return false
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-s.p.done:
		s.closed = true
		return false
	}
}

// readBody streams the DATA content (RFC 5321 §4.5.2) into b: a line that
// starts with "." loses that dot, and only CRLF "." CRLF ends the data. A
// bare LF is content, not a line end, so "\n.\n" does not end it. Lines may
// be any length; they are passed on in buffer-sized pieces without copying.
// With dropAfter >= 0 it returns errDropInBody once that many bytes were
// read.
func readBody(r *bufio.Reader, b *body, dropAfter int64) error {
	atStart := true // at the start of a line: after DATA's CRLF or a CRLF
	prevCR := false // the previous piece ended in CR (a CRLF may be split)
	var read int64
	for {
		line, err := r.ReadSlice('\n')
		full := err == bufio.ErrBufferFull
		if err != nil && !full {
			return err
		}
		read += int64(len(line))
		if atStart && line[0] == '.' {
			if !full && len(line) == 3 && line[1] == '\r' {
				return nil
			}
			line = line[1:]
		}
		b.write(line)
		n := len(line)
		if full {
			atStart, prevCR = false, n > 0 && line[n-1] == '\r'
		} else {
			atStart = (n >= 2 && line[n-2] == '\r') || (n == 1 && prevCR)
			prevCR = false
		}
		if dropAfter >= 0 && read >= dropAfter {
			return errDropInBody
		}
	}
}

// body receives the content. The CRLF before the final "." belongs to the
// last line of the message (RFC 5321 §4.1.1.4), so it is kept.
type body struct {
	h    hash.Hash
	keep bool   // keep the bytes in data (no DiscardBodies)
	data []byte // content, when keep
	n    int64  // content bytes so far
	max  int64  // Options.MaxMessageBytes
	over bool   // n passed max: the rest is read and thrown away
}

func (b *body) write(p []byte) { b.emit(p) }

// finish is called at the final dot.
func (b *body) finish() {
	if b.keep && b.data == nil && !b.over {
		b.data = []byte{}
	}
}

func (b *body) emit(p []byte) {
	if len(p) == 0 || b.over {
		return
	}
	b.n += int64(len(p))
	if b.n > b.max {
		b.over, b.data = true, nil
		return
	}
	b.h.Write(p)
	if b.keep {
		b.data = append(b.data, p...)
	}
}

// cmdBdat implements RFC 3030: "BDAT <size> [LAST]" followed by exactly
// size bytes, taken as they are (no dot-stuffing). Each chunk gets a
// reply; LAST ends the message and gets the final one. The DATA-stage
// faults apply at the first chunk, the body faults after it.
func (s *session) cmdBdat(arg string) {
	if !s.p.opts.Chunking {
		s.reply(502, "5.5.1", "Unrecognized command.")
		return
	}
	sizeArg, rest, _ := strings.Cut(arg, " ")
	size, err := strconv.ParseInt(sizeArg, 10, 64)
	last := strings.EqualFold(strings.TrimSpace(rest), "LAST")
	if err != nil || size < 0 || (rest != "" && !last) {
		// The chunk's length is unknown: nothing can be read reliably.
		s.reply(501, "5.5.4", "Syntax: BDAT <size> [LAST]")
		s.closed = true
		return
	}
	refuse := func(code int, enhanced, text string) {
		// The chunk is read and thrown away (RFC 3030 §3).
		if _, err := io.CopyN(io.Discard, s.r, size); err != nil {
			s.closed = true
			return
		}
		s.reply(code, enhanced, text)
	}
	first := !s.t.bdat
	switch {
	case !s.t.active:
		refuse(503, "5.5.1", "need MAIL command")
		return
	case len(s.t.rcpts) == 0:
		refuse(554, "5.5.1", "Error: no valid recipients")
		return
	case first && s.t.fx.dropAtData:
		s.drop("drop-at-data")
		return
	case first && s.t.fx.stallAtData:
		s.stall("stall-at-data")
		return
	case first && s.t.fx.dataCmd != nil:
		r := *s.t.fx.dataCmd
		s.t = txn{}
		refuse(r.Code, r.Enhanced, strings.Join(r.Lines, " "))
		return
	}
	b := &s.body
	if first {
		s.t.bdat = true
		b = s.startBody()
	}
	if s.t.fx.inBody() {
		s.bodyFault()
		s.closed = true
		return
	}
	for remaining := size; remaining > 0; {
		piece, err := s.r.Peek(int(min(remaining, int64(s.r.Size()))))
		if len(piece) == 0 && err != nil {
			s.closed = true
			return
		}
		b.write(piece)
		s.r.Discard(len(piece))
		remaining -= int64(len(piece))
	}
	if !last {
		s.reply(250, "2.0.0", strconv.FormatInt(size, 10)+" octets received")
		return
	}
	s.finishMessage()
}

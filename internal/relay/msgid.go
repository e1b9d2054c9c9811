package relay

// maxHeaderSniff bounds the header bytes looked at for the Message-ID:
// PowerMTA and common senders write it within the first few KB, after
// Received and DKIM-Signature lines.
const maxHeaderSniff = 64 << 10

// maxMessageID bounds the Message-ID kept for the log line.
const maxMessageID = 256

// headerSniffer finds the Message-ID header field (RFC 5322 §3.6.4) as
// the body streams upstream, byte by byte and without copying the
// message, so the "message" log line can carry the Message-ID the sender
// wrote: the key a bounce report gives back (feedback:
// original_message_id), so an operator can join the two. It stops at the
// end of the header section or after maxHeaderSniff bytes.
type headerSniffer struct {
	done    bool
	seen    int
	lineLen int                // bytes of the current line, CR excluded
	name    [16]byte           // the current field's name, lowercased, while it fits
	nameLen int                // -1 once the colon was seen
	inID    bool               // the current field is Message-ID
	id      [maxMessageID]byte // its value, printable ASCII only
	idLen   int
	found   bool
}

func (h *headerSniffer) add(p []byte) {
	for _, c := range p {
		if h.done {
			return
		}
		h.step(c)
	}
}

func (h *headerSniffer) step(c byte) {
	if h.seen++; h.seen > maxHeaderSniff {
		h.done = true
		return
	}
	switch {
	case c == '\r':
		return
	case c == '\n':
		if h.lineLen == 0 { // the empty line: end of the header section
			h.done = true
		}
		h.lineLen = 0
		return
	}
	if h.lineLen == 0 {
		if c == ' ' || c == '\t' { // a folded continuation of the field
			h.lineLen++
			return
		}
		if h.inID { // the Message-ID field ended
			h.found, h.done = true, true
			return
		}
		h.nameLen = 0
	}
	h.lineLen++
	switch {
	case h.nameLen >= 0 && c == ':':
		h.inID = string(h.name[:min(h.nameLen, len(h.name))]) == "message-id" && h.nameLen == len("message-id")
		h.nameLen = -1
	case h.nameLen >= 0:
		if h.nameLen < len(h.name) {
			h.name[h.nameLen] = c | 0x20 // ASCII lowercase; a non-letter cannot make "message-id" match
		}
		h.nameLen++
	case h.inID && c > ' ' && c < 0x7f && h.idLen < maxMessageID:
		h.id[h.idLen] = c
		h.idLen++
	}
}

// messageID is the Message-ID found; "" when there is none.
func (h *headerSniffer) messageID() string {
	if !h.found && !h.inID {
		return ""
	}
	return string(h.id[:h.idLen])
}

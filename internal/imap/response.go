package imap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits of what a server may send us.
const (
	maxLineBytes    = 64 << 10 // one response line without its literals
	maxLiteralBytes = 64 << 20 // one literal: a message fetched whole
	maxLiterals     = 16       // literals in one response
)

// ErrMalformed is returned for a response that breaks the grammar or the
// limits above.
var ErrMalformed = errors.New("imap: malformed response")

// response is one server response: its tag ("*" untagged, "+"
// continuation, or a command tag), the rest of the text with each
// literal replaced by "{N}", and the literals in order.
type response struct {
	Tag      string
	Text     string
	Literals [][]byte
}

// status splits a tagged or untagged status response: "OK [X] text" →
// "OK", "X", "text". A response that is not a status gives "".
func (r response) status() (cond, code, text string) {
	cond, rest, _ := strings.Cut(r.Text, " ")
	cond = strings.ToUpper(cond)
	switch cond {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
	default:
		return "", "", ""
	}
	if strings.HasPrefix(rest, "[") {
		if i := strings.IndexByte(rest, ']'); i > 0 {
			return cond, rest[1:i], strings.TrimSpace(rest[i+1:])
		}
	}
	return cond, "", rest
}

// readResponse reads one response, literals included (RFC 3501 §4.3: a
// line ending in {N} is followed by N bytes, then the line goes on).
func readResponse(br *bufio.Reader) (response, error) {
	var (
		r    response
		text strings.Builder
	)
	for {
		line, err := readLine(br)
		if err != nil {
			return response{}, err
		}
		if text.Len()+len(line) > maxLineBytes {
			return response{}, fmt.Errorf("%w: line over %d bytes", ErrMalformed, maxLineBytes)
		}
		text.WriteString(line)
		n, ok, err := literalSize(line)
		if err != nil {
			return response{}, err
		}
		if !ok {
			break
		}
		if len(r.Literals) == maxLiterals {
			return response{}, fmt.Errorf("%w: over %d literals", ErrMalformed, maxLiterals)
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(br, lit); err != nil {
			return response{}, fmt.Errorf("imap: read literal: %w", err)
		}
		r.Literals = append(r.Literals, lit)
	}
	s := text.String()
	tag, rest, ok := strings.Cut(s, " ")
	if !ok && s != "+" {
		return response{}, fmt.Errorf("%w: %q", ErrMalformed, clip(s))
	}
	if tag == "" {
		return response{}, fmt.Errorf("%w: empty tag", ErrMalformed)
	}
	r.Tag, r.Text = tag, rest
	return r, nil
}

// readLine reads one CRLF- (or LF-) terminated line, bounded.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", fmt.Errorf("imap: read: %w", err)
		}
		b = append(b, chunk...)
		if len(b) > maxLineBytes {
			return "", fmt.Errorf("%w: line over %d bytes", ErrMalformed, maxLineBytes)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// literalSize reports the N of a line ending in "{N}" (or "{N+}",
// RFC 7888). A literal over maxLiteralBytes is an error, not text: its
// bytes would otherwise be read as responses (a bounced message's line
// "x7 OK" taken for the tagged reply).
func literalSize(line string) (int, bool, error) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, nil
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, nil
	}
	num := strings.TrimSuffix(line[i+1:len(line)-1], "+")
	n, err := strconv.Atoi(num)
	switch {
	case err != nil && num != "" && strings.Trim(num, "0123456789") == "":
		// All digits, but too many for an int: too large.
		return 0, false, fmt.Errorf("%w: literal of %s bytes", ErrMalformed, clip(num))
	case err != nil || n < 0:
		return 0, false, nil
	case n > maxLiteralBytes:
		return 0, false, fmt.Errorf("%w: literal of %d bytes, over %d", ErrMalformed, n, maxLiteralBytes)
	}
	return n, true, nil
}

// clip shortens server text quoted in an error.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// fields splits the text of an untagged data response into words,
// ignoring parentheses: enough for SEARCH, EXISTS and FETCH's UID.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '(' || r == ')' })
}

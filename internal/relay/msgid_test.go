package relay

import (
	"testing"
)

// TestMessageID: the Message-ID of a streamed header section, whatever
// the reads' boundaries, folding, case, or its absence.
func TestMessageID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"plain", "From: a@b\r\nMessage-ID: <x.1@sender.example>\r\nSubject: s\r\n\r\nbody Message-ID: <not@this>\r\n", "<x.1@sender.example>"},
		{"case and folding", "message-id:\r\n <folded.2@example>\r\nTo: c@d\r\n\r\n", "<folded.2@example>"},
		{"bare LF", "Message-Id: <lf@example>\n\nbody\n", "<lf@example>"},
		{"none", "From: a@b\r\nSubject: no id\r\n\r\nMessage-ID: <in-body@example>\r\n", ""},
		{"not a continuation", "X-Message-ID: <other@example>\r\n\r\n", ""},
		{"control characters dropped", "Message-ID: <a\x01b@example>\r\n\r\n", "<ab@example>"},
	} {
		for _, step := range []int{1, 3, 7, 1 << 20} {
			var h headerSniffer
			for i := 0; i < len(tc.msg); i += step {
				h.add([]byte(tc.msg[i:min(len(tc.msg), i+step)]))
			}
			if got := h.messageID(); got != tc.want {
				t.Errorf("%s, reads of %d: %q, want %q", tc.name, step, got, tc.want)
			}
		}
	}
}

// FuzzMessageID: any header bytes give a short printable result, and the
// sniffer never looks further than its bound.
func FuzzMessageID(f *testing.F) {
	f.Add([]byte("Message-ID: <x@y>\r\n\r\n"), 3)
	f.Add([]byte("message-id:\r\n\t<a@b>\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, in []byte, step int) {
		step = max(1, step%64+1)
		var h headerSniffer
		for i := 0; i < len(in); i += step {
			h.add(in[i:min(len(in), i+step)])
		}
		if h.seen > maxHeaderSniff+1 {
			t.Fatalf("looked at %d bytes", h.seen)
		}
		id := h.messageID()
		if len(id) > maxMessageID {
			t.Fatalf("id of %d bytes", len(id))
		}
		for _, c := range []byte(id) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("id %q holds %#x", id, c)
			}
		}
	})
}

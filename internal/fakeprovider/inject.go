package fakeprovider

import (
	"strconv"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

// injKind is a failure chosen by an address's local part (doc.go lists them).
type injKind uint8

const (
	injNone          injKind = iota
	injReject                // reject-NNN: this RCPT gets NNN
	injFailMail              // failmail-NNN: MAIL FROM gets NNN
	injFailData              // faildata-NNN: the reply after the dot is NNN, nothing stored
	injFailDataCmd           // faildatacmd-NNN: the DATA command gets NNN
	injDropAtRcpt            // drop-at-rcpt: close at this RCPT
	injDropAtData            // drop-at-data: close at DATA
	injDropInBody            // drop-in-body: close after dropInBodyBytes of body
	injDropAfterDot          // drop-after-dot: store, then close before the 250
	injSlow                  // slow-MS: delay the reply after the dot
	injDropAtMail            // drop-at-mail: close at MAIL
	injStallAtMail           // stall-at-mail: no reply to MAIL, ever
	injStallAtRcpt           // stall-at-rcpt: no reply to this RCPT
	injStallAtData           // stall-at-data: no reply to DATA
	injStallInBody           // stall-in-body: stop reading after dropInBodyBytes of body
	injResetInBody           // reset-in-body: TCP RST after dropInBodyBytes of body
	injStallAfterDot         // stall-after-dot: no reply after the final dot, nothing stored
	injTrickle               // trickle: every later reply one byte per Options.TrickleInterval
)

// dropInBodyBytes is how much of the body drop-in-body reads before closing.
const dropInBodyBytes = 1024

// maxSlow bounds slow-MS so a typo cannot stall a test for days.
const maxSlow = 10 * time.Minute

// injection is the parsed failure of one address.
type injection struct {
	kind  injKind
	reply reply.Reply   // for the kinds that answer with a code
	delay time.Duration // for injSlow
}

var injPrefixes = [...]struct {
	prefix string
	kind   injKind
}{
	{"reject-", injReject},
	{"failmail-", injFailMail},
	{"faildatacmd-", injFailDataCmd},
	{"faildata-", injFailData},
	{"drop-at-rcpt", injDropAtRcpt},
	{"drop-at-data", injDropAtData},
	{"drop-in-body", injDropInBody},
	{"drop-after-dot", injDropAfterDot},
	{"slow-", injSlow},
	{"drop-at-mail", injDropAtMail},
	{"stall-at-mail", injStallAtMail},
	{"stall-at-rcpt", injStallAtRcpt},
	{"stall-at-data", injStallAtData},
	{"stall-in-body", injStallInBody},
	{"reset-in-body", injResetInBody},
	{"stall-after-dot", injStallAfterDot},
	{"trickle", injTrickle},
}

// parseInjection reads the failure requested by addr's local part. An
// address that asks for nothing, or asks with a malformed code, yields
// injNone and is treated as an ordinary address.
func parseInjection(addr string) injection {
	local := addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local = addr[:at]
	}
	if local == "" {
		return injection{}
	}
	switch local[0] | 0x20 { // cheap pre-check: every prefix starts with one of these
	case 'r', 'f', 'd', 's', 't':
	default:
		return injection{}
	}
	for _, ip := range injPrefixes {
		if len(local) < len(ip.prefix) || !strings.EqualFold(local[:len(ip.prefix)], ip.prefix) {
			continue
		}
		rest := local[len(ip.prefix):]
		switch ip.kind {
		case injReject, injFailMail, injFailData, injFailDataCmd:
			r, ok := parseReply(ip.kind, rest)
			if !ok {
				return injection{}
			}
			return injection{kind: ip.kind, reply: r}
		case injSlow:
			n := digits(rest)
			if n == 0 || n > 9 {
				return injection{}
			}
			ms, _ := strconv.Atoi(rest[:n]) // at most 9 digits: cannot fail
			return injection{kind: injSlow, delay: min(time.Duration(ms)*time.Millisecond, maxSlow)}
		default:
			return injection{kind: ip.kind}
		}
	}
	return injection{}
}

// parseReply reads "NNN" or "NNN-X.Y.Z" at the start of s.
func parseReply(kind injKind, s string) (reply.Reply, bool) {
	if digits(s) < 3 || (len(s) > 3 && s[3] >= '0' && s[3] <= '9') {
		return reply.Reply{}, false
	}
	code, _ := strconv.Atoi(s[:3])
	if code < 400 || code > 599 {
		return reply.Reply{}, false
	}
	enh := ""
	if len(s) > 4 && s[3] == '-' {
		cand := s[4:]
		n := 0
		for n < len(cand) && (cand[n] == '.' || (cand[n] >= '0' && cand[n] <= '9')) {
			n++
		}
		cand = strings.TrimRight(cand[:n], ".")
		if e, rest := reply.SplitEnhanced(code, cand); e != "" && rest == "" {
			enh = e
		}
	}
	if enh == "" {
		enh = defaultEnhanced(kind, code)
	}
	return reply.New(code, enh, injectedText(enh)), true
}

// defaultEnhanced is the enhanced code a bare NNN gets: the provider's own
// for the common cases, N.0.0 otherwise.
func defaultEnhanced(kind injKind, code int) string {
	switch {
	case code == 421:
		return "4.7.0"
	case kind == injReject && code == 550:
		return "5.1.1"
	case kind == injReject && code == 452:
		return "4.2.2"
	case kind == injFailData && code == 550:
		return "5.7.1"
	case kind == injFailData && code == 451:
		return "4.3.0"
	case kind == injFailData && code == 554:
		return "5.2.0"
	}
	return strconv.Itoa(code/100) + ".0.0"
}

// injectedText is the reply text for an enhanced code, as Gmail or
// Microsoft word it (PROVIDERS.md).
func injectedText(enh string) string {
	switch enh {
	case "5.1.1":
		return "The email account that you tried to reach does not exist."
	case "4.2.2":
		return "mailbox full"
	case "5.7.1":
		return "Message rejected as unsolicited mail."
	case "4.3.0":
		return "Temporary System Problem.  Try again later."
	case "5.4.5":
		return "Daily user sending limit exceeded."
	case "5.2.0":
		return "STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
	case "5.2.252":
		return "SendAsDenied; not allowed to send as this address"
	case "4.3.2":
		return "STOREDRV.ClientSubmit; sender thread limit exceeded"
	case "4.7.0":
		return "Try again later, closing connection."
	}
	return "Injected failure."
}

// digits counts the leading ASCII digits of s.
func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// effects are the transaction-wide injections gathered from the sender and
// the accepted recipients; for each kind the first one wins.
type effects struct {
	dataCmd       *reply.Reply // faildatacmd
	dataReply     *reply.Reply // faildata
	dropAtData    bool
	dropInBody    bool
	dropAfterDot  bool
	delay         time.Duration
	stallAtData   bool
	stallInBody   bool
	resetInBody   bool
	stallAfterDot bool
}

func (e *effects) add(in injection) {
	switch in.kind {
	case injFailDataCmd:
		if e.dataCmd == nil {
			r := in.reply
			e.dataCmd = &r
		}
	case injFailData:
		if e.dataReply == nil {
			r := in.reply
			e.dataReply = &r
		}
	case injDropAtData:
		e.dropAtData = true
	case injDropInBody:
		e.dropInBody = true
	case injDropAfterDot:
		e.dropAfterDot = true
	case injSlow:
		if e.delay == 0 {
			e.delay = in.delay
		}
	case injStallAtData:
		e.stallAtData = true
	case injStallInBody:
		e.stallInBody = true
	case injResetInBody:
		e.resetInBody = true
	case injStallAfterDot:
		e.stallAfterDot = true
	}
}

// Stage is a step of an SMTP session outside a mail transaction, where a
// session fault (Options.SessionFault) strikes.
type Stage uint8

const (
	StageGreeting Stage = iota + 1 // instead of, or while sending, the 220 greeting
	StageTLS                       // the TLS handshake: implicit, or after STARTTLS's 220
	StageEHLO                      // the reply to the first EHLO or HELO
	StageSTARTTLS                  // the reply to STARTTLS
	StageAuth                      // the reply to AUTH, after the client's credentials
	// StageReuse is the reply to the first command after the session
	// delivered a message, the command is not carried out: how a pooled
	// session meets its next use after the provider timed it out while
	// idle (ActReply with "421 4.4.2 ... closing connection").
	StageReuse
)

// Action is what a session fault does at its Stage.
type Action uint8

const (
	ActDrop    Action = iota + 1 // close the connection without a word
	ActReset                     // close it with a TCP RST
	ActStall                     // say nothing more until the client closes
	ActReply                     // send Fault.Reply instead of the normal reply (421 also closes)
	ActTrickle                   // send this reply and all later ones one byte per TrickleInterval
	ActGarbage                   // send bytes that are neither SMTP nor TLS, then close
)

// Fault is a failure at one stage of an SMTP session; the zero Fault is
// none. Options.SessionFault picks one per connection.
type Fault struct {
	Stage  Stage
	Action Action
	Reply  reply.Reply // for ActReply, e.g. reply.New(454, "4.7.0", "Too many login attempts")
	// Repeat makes the fault strike every time its stage comes round in
	// the session (every AUTH, say), not only the first time.
	Repeat bool
}

// garbage is what ActGarbage sends: not a reply, not a TLS record.
const garbage = "\x00\xff\xfeHTTP/1.1 400 Bad Request\r\n\x7f\x80garbage\r\n"

package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// Format is the old tool's import line, for messages.
const Format = "email,account_id,refresh_token,client_id[,client_secret][,ip_address]"

// MaxLineBytes bounds one line of an import file: a refresh token is 1–2
// KB, a line of a few KB; anything near this is not an import file.
const MaxLineBytes = 64 << 10

// Line is one account line of an import file.
type Line struct {
	N      int // line number in the file, from 1
	Record config.AccountRecord
	Err    error // why the line cannot be read; Record then holds only the email, if any
}

// Parse reads an import file: one account per line in the old tool's format
// (see ParseLine). Blank lines and lines starting with "#" are skipped, as
// is a header line (a first line whose first field is a column name such as
// "email" rather than an address). A UTF-8 byte order mark and CRLF line
// ends are accepted. A line that cannot be read is returned with its Err
// set; only a read error or a line over MaxLineBytes fails the whole file.
func Parse(r io.Reader) ([]Line, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
	var out []Line
	n, first := 0, true
	for sc.Scan() {
		n++
		raw := sc.Bytes()
		if n == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
		}
		s := strings.TrimSpace(string(raw))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if first {
			first = false
			if isHeader(s) {
				continue
			}
		}
		rec, err := ParseLine(s)
		out = append(out, Line{N: n, Record: rec, Err: err})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes: not an import file", n+1, MaxLineBytes)
		}
		return nil, err
	}
	return out, nil
}

// isHeader reports whether s is a column-name line: its first field holds
// no "@" and names the email column.
func isHeader(s string) bool {
	f, err := splitFields(s)
	if err != nil || len(f) == 0 || strings.Contains(f[0], "@") {
		return false
	}
	h := strings.ToLower(f[0])
	return strings.HasPrefix(h, "email") || h == "e-mail" || h == "mail" || h == "address"
}

// ParseLine reads one account line:
//
//	email,account_id,refresh_token,client_id[,client_secret][,ip_address]
//
// Fields are separated by commas; spaces around a field are dropped; a
// field may be double-quoted as in CSV ("" is a quote inside one). An empty
// account_id is generated later (Normalise), an empty client_secret
// is a public client (Outlook). With five fields the fifth is the
// client_secret, unless it is an IP address: no client secret looks like
// one, and old files for Outlook public clients left the secret out rather
// than empty. ParseLine checks the shape of each field, not the account as
// a whole (Normalise does that). Errors name fields, never values:
// a line holds a refresh token.
func ParseLine(s string) (config.AccountRecord, error) {
	f, err := splitFields(s)
	if err != nil {
		return config.AccountRecord{}, err
	}
	if len(f) < 4 || len(f) > 6 {
		return failed(f[0]), fmt.Errorf("%d fields, want 4 to 6: %s", len(f), Format)
	}
	r := config.AccountRecord{Email: f[0], AccountID: f[1], RefreshToken: secret.New(f[2]), ClientID: f[3]}
	switch {
	case len(f) == 6:
		r.ClientSecret, r.IPAddress = secret.New(f[4]), f[5]
	case len(f) == 5 && isIP(f[4]):
		r.IPAddress = f[4]
	case len(f) == 5:
		r.ClientSecret = secret.New(f[4])
	}
	switch {
	case r.Email == "":
		err = errors.New("email: empty")
	case !looksLikeAddress(r.Email):
		err = errors.New("email: not an address (want exactly one @ with text on both sides, no spaces)")
	case strings.ContainsAny(r.AccountID, " \t"):
		err = errors.New("account_id: contains a space")
	case r.RefreshToken.Empty():
		err = errors.New("refresh_token: empty")
	case strings.ContainsAny(r.RefreshToken.Reveal(), " \t"):
		err = errors.New("refresh_token: contains a space")
	case r.ClientID == "":
		err = errors.New("client_id: empty")
	case strings.ContainsAny(r.ClientSecret.Reveal(), " \t"):
		err = errors.New("client_secret: contains a space")
	case r.IPAddress != "" && !isIP(r.IPAddress):
		err = errors.New("ip_address: not an IP address")
	}
	if err != nil {
		return failed(r.Email), err
	}
	return r, nil
}

// failed is the Record of a line that cannot be imported: only its email,
// for the report, and only if the first field is one. A line whose columns
// are shuffled may hold a token there.
func failed(first string) config.AccountRecord {
	if looksLikeAddress(first) {
		return config.AccountRecord{Email: first}
	}
	return config.AccountRecord{}
}

func looksLikeAddress(s string) bool {
	return strings.Count(s, "@") == 1 && !strings.HasPrefix(s, "@") && !strings.HasSuffix(s, "@") &&
		!strings.ContainsAny(s, " \t")
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// splitFields splits a line at commas, CSV style: spaces and tabs around a
// field are dropped, a field that starts with a double quote runs to the
// matching quote ("" stands for one quote inside it). Control characters
// are refused anywhere: they are not part of any credential and would
// corrupt the terminal when echoed.
func splitFields(s string) ([]string, error) {
	var out []string
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		var field string
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("field %d: unterminated quote", len(out)+1)
			}
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if i < len(s) && s[i] != ',' {
				return nil, fmt.Errorf("field %d: text after the closing quote", len(out)+1)
			}
			field = strings.TrimSpace(b.String())
		} else {
			j := strings.IndexByte(s[i:], ',')
			if j < 0 {
				j = len(s) - i
			}
			field = strings.TrimSpace(s[i : i+j])
			if strings.Contains(field, `"`) {
				return nil, fmt.Errorf("field %d: stray quote (quote the whole field)", len(out)+1)
			}
			i += j
		}
		for k := 0; k < len(field); k++ {
			if c := field[k]; (c < 0x20 && c != '\t') || c == 0x7f {
				return nil, fmt.Errorf("field %d: control character", len(out)+1)
			}
		}
		out = append(out, field)
		if i >= len(s) {
			return out, nil
		}
		i++ // the comma
	}
}

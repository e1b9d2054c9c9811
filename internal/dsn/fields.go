package dsn

import (
	"bytes"
	"strings"
)

// group is one block of delivery-status fields: the per-message fields
// or one recipient's (RFC 3464 §2.1). Names are lowercased; a repeated
// name keeps its first value.
type group map[string]string

func (g group) get(name string) string { return g[name] }

// maxFieldBytes bounds one unfolded field value.
const maxFieldBytes = 4096

// fieldGroups splits a message/delivery-status body into its groups:
// blank lines separate groups, a line starting with a blank continues
// the field before it (unfolded with one space), other lines are
// "Name: value"; a line without a colon is skipped.
func fieldGroups(b []byte) []group {
	var (
		out  []group
		cur  group
		last string
	)
	for line := range bytes.Lines(b) {
		s := strings.TrimRight(string(line), "\r\n")
		switch {
		case strings.TrimSpace(s) == "":
			if cur != nil {
				out = append(out, cur)
			}
			cur, last = nil, ""
		case (s[0] == ' ' || s[0] == '\t') && last != "":
			if v := cur[last]; len(v) < maxFieldBytes {
				cur[last] = v + " " + strings.TrimSpace(s)
			}
		default:
			name, value, ok := strings.Cut(s, ":")
			name = strings.ToLower(strings.TrimSpace(name))
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				last = ""
				continue
			}
			if cur == nil {
				cur = group{}
			}
			if _, dup := cur[name]; dup {
				last = ""
				continue
			}
			cur[name], last = strings.TrimSpace(value), name
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

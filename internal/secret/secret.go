// Package secret holds tokens, client secrets and passwords in a type that
// cannot leak by accident: it prints as [redacted] through fmt, log/slog and
// encoding/json. Code that really needs the value calls Reveal, which makes
// every use easy to find.
package secret

import "log/slog"

// String is a secret string. The zero value is the empty secret.
type String struct{ v string }

// New wraps s.
func New(s string) String { return String{v: s} }

// Reveal returns the secret itself. Call it only where the value goes on the
// wire to the party it belongs to.
func (s String) Reveal() string { return s.v }

// Empty reports whether no secret is set.
func (s String) Empty() bool { return s.v == "" }

const redacted = "[redacted]"

// String implements fmt.Stringer.
func (s String) String() string {
	if s.v == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer so %#v does not print the value.
func (s String) GoString() string { return `secret.String("` + s.String() + `")` }

// LogValue implements slog.LogValuer.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON renders the redacted form; secrets never leave through JSON.
func (s String) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText implements encoding.TextMarshaler with the redacted form.
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: a secret may be read
// from JSON (the admin API's request bodies), it is only never written
// back out.
func (s *String) UnmarshalText(b []byte) error {
	s.v = string(b)
	return nil
}

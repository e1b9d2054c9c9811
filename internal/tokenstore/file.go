package tokenstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// formatVersion is the "version" this package writes and the only one it
// reads. A file with another version is refused rather than overwritten.
const formatVersion = 1

// fileComment heads every state file, for the operator who opens it.
const fileComment = "xoauth2-proxy token state: rotated refresh tokens and cached access tokens, by account_id. " +
	"It overlays accounts.json and is rewritten by the proxy; edit accounts.json instead (an entry whose " +
	"credential no longer matches accounts.json is ignored). Keep it mode 0600."

// maxFileBytes bounds what Open and a write read back: about 3 KB per
// account, so 64 MiB is room for some 20,000 accounts.
const maxFileBytes = 64 << 20

// fileDoc is the JSON layout of the state file.
type fileDoc struct {
	Comment  string               `json:"_comment,omitempty"`
	Version  int                  `json:"version"`
	Accounts map[string]fileEntry `json:"accounts"`
}

// fileEntry is one account in the file. Times are RFC 3339 in UTC.
type fileEntry struct {
	Credential   string    `json:"credential"`
	Grant        string    `json:"grant,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	Obtained     time.Time `json:"obtained,omitzero"`
	State        string    `json:"state,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	LastUsed     time.Time `json:"last_used,omitzero"`
	Updated      time.Time `json:"updated"`

	// RefreshVersion: Entry.RefreshVersion (cluster mode).
	RefreshVersion int64 `json:"refresh_version,omitempty"`
}

// ErrVersion is wrapped by the error of a state file written in a format
// version this proxy does not read (by a newer release, say). Such a file is
// neither loaded nor overwritten.
var ErrVersion = errors.New("unsupported format version")

// ParseError is a state file that cannot be read. The file is left alone:
// it may hold the only copy of a rotated refresh token.
type ParseError struct {
	Path string
	Err  error
}

func (e *ParseError) Error() string {
	return "token state file " + e.Path + ": " + e.Err.Error() +
		" (move it aside to start from accounts.json; rotated refresh tokens in it would then be lost)"
}

func (e *ParseError) Unwrap() error { return e.Err }

// Parse decodes a state file. It never returns a secret in its error. Unknown
// keys are ignored, so a file written by a later version with extra keys
// still loads; a different "version" is refused.
func Parse(data []byte) (map[string]Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var doc fileDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON document")
	}
	if doc.Version != formatVersion {
		return nil, fmt.Errorf("%w %d (this proxy reads version %d)", ErrVersion, doc.Version, formatVersion)
	}
	out := make(map[string]Entry, len(doc.Accounts))
	for id, fe := range doc.Accounts {
		if id == "" {
			return nil, errors.New(`an entry has an empty account_id`)
		}
		if err := checkToken(fe.RefreshToken); err != nil {
			return nil, fmt.Errorf("account %q: refresh_token %w", id, err)
		}
		if err := checkToken(fe.AccessToken); err != nil {
			return nil, fmt.Errorf("account %q: access_token %w", id, err)
		}
		for _, t := range []time.Time{fe.Expiry, fe.Obtained, fe.LastUsed, fe.Updated} {
			// A time that cannot be written back would make every later
			// write of the file fail.
			if y := utc(t).Year(); !t.IsZero() && (y < 1 || y > 9999) {
				return nil, fmt.Errorf("account %q: a time is out of range", id)
			}
		}
		e := Entry{
			Credential:   fe.Credential,
			Grant:        fe.Grant,
			RefreshToken: secret.New(fe.RefreshToken),
			AccessToken:  secret.New(fe.AccessToken),
			Expiry:       fe.Expiry,
			Obtained:     fe.Obtained,
			State:        fe.State,
			LastError:    fe.LastError,
			LastUsed:     fe.LastUsed,
			Updated:      fe.Updated,
		}
		e.RefreshVersion = fe.RefreshVersion
		out[id] = e
	}
	return out, nil
}

// describeJSONError reports a decoding failure by position and kind only:
// the messages of encoding/json can quote the offending value, which may be
// a token.
func describeJSONError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("invalid JSON: field %q must not be %s", te.Field, te.Value)
	case errors.Is(err, io.EOF):
		return errors.New("empty file")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	default:
		return errors.New("invalid JSON")
	}
}

// checkToken refuses what no OAuth2 token contains (RFC 6750 §2.1 b64token
// has no spaces or control characters); a token with them would corrupt the
// XOAUTH2 string or the form body it is sent in.
func checkToken(t string) error {
	if strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("contains spaces or control characters")
	}
	return nil
}

// Encode renders entries as a state file, accounts sorted by id.
func Encode(entries map[string]Entry) ([]byte, error) {
	doc := fileDoc{Comment: fileComment, Version: formatVersion, Accounts: make(map[string]fileEntry, len(entries))}
	for id, e := range entries {
		fe := fileEntry{
			Credential:   e.Credential,
			Grant:        e.Grant,
			RefreshToken: e.RefreshToken.Reveal(),
			AccessToken:  e.AccessToken.Reveal(),
			Expiry:       utc(e.Expiry),
			Obtained:     utc(e.Obtained),
			State:        e.State,
			LastError:    e.LastError,
			LastUsed:     utc(e.LastUsed),
			Updated:      utc(e.Updated),
		}
		fe.RefreshVersion = e.RefreshVersion
		doc.Accounts[id] = fe
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode token state: %w", err)
	}
	return append(b, '\n'), nil
}

// utc drops the monotonic reading and the location, so that a time
// survives a round trip through the file unchanged.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Round(0)
}

// readFile reads and parses path. A missing file is an empty state.
func readFile(path string) (map[string]Entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]Entry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read token state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read token state %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, &ParseError{Path: path, Err: fmt.Errorf("larger than %d bytes", maxFileBytes)}
	}
	entries, err := Parse(data)
	if err != nil {
		return nil, &ParseError{Path: path, Err: err}
	}
	return entries, nil
}

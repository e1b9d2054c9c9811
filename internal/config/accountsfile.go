package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

// AccountsFile is accounts.json in editable form. Editing keeps what the
// operator wrote: the layout (array or object), the order of keys, unknown
// keys and "_" comments; only the values that are set change. Write
// validates the result with the same loader as start-up before it
// replaces the file, atomically.
type AccountsFile struct {
	Path    string
	wrapped bool     // {"accounts": [...]} rather than a bare array
	top     *ordered // the top-level object when wrapped
	list    []*ordered
}

// ordered is a JSON object that remembers the order of its keys.
type ordered struct {
	keys []string
	vals map[string]json.RawMessage
}

// ErrNoAccount is returned for an email that no account has.
var ErrNoAccount = errors.New("no such account")

// ReadAccountsFile parses path for editing. A file that does not parse is
// an error: nothing may be written over a file we could not read.
func ReadAccountsFile(path string) (*AccountsFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	f := &AccountsFile{Path: path}
	trimmed := bytes.TrimSpace(raw)
	switch {
	case bytes.HasPrefix(trimmed, []byte("[")):
		if f.list, err = decodeList(trimmed); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case bytes.HasPrefix(trimmed, []byte("{")):
		f.wrapped = true
		if f.top, err = decodeOrdered(trimmed); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		acc, ok := f.top.vals["accounts"]
		if !ok {
			return nil, fmt.Errorf("%s: no \"accounts\" array", path)
		}
		if f.list, err = decodeList(acc); err != nil {
			return nil, fmt.Errorf("%s: accounts: %w", path, err)
		}
	default:
		return nil, fmt.Errorf("%s: not an accounts file", path)
	}
	return f, nil
}

// NewAccountsFile returns an accounts file with no accounts, in the object
// layout with a comment: {"_comment": comment, "accounts": []}. For the
// programs that generate one (demo, bench); Bytes renders it.
func NewAccountsFile(comment string) *AccountsFile {
	top := &ordered{vals: map[string]json.RawMessage{}}
	_ = top.set("_comment", comment) // a string always marshals
	_ = top.set("accounts", []any{})
	return &AccountsFile{wrapped: true, top: top}
}

func decodeList(raw []byte) ([]*ordered, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([]*ordered, 0, len(items))
	for i, it := range items {
		o, err := decodeOrdered(it)
		if err != nil {
			return nil, fmt.Errorf("account #%d: %w", i+1, err)
		}
		out = append(out, o)
	}
	return out, nil
}

func decodeOrdered(raw []byte) (*ordered, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	o := &ordered{vals: map[string]json.RawMessage{}}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := t.(string)
		if !ok {
			return nil, errors.New("bad object key")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := o.vals[k]; !dup {
			o.keys = append(o.keys, k)
		}
		o.vals[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return o, nil
}

func (o *ordered) set(k string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = b
	return nil
}

func (o *ordered) del(k string) {
	if _, ok := o.vals[k]; !ok {
		return
	}
	delete(o.vals, k)
	for i, x := range o.keys {
		if x == k {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			return
		}
	}
}

func (o *ordered) str(k string) string {
	var s string
	_ = json.Unmarshal(o.vals[k], &s)
	return s
}

func (o *ordered) marshal(buf *bytes.Buffer) {
	buf.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(o.vals[k])
	}
	buf.WriteByte('}')
}

// Len returns the number of account records.
func (f *AccountsFile) Len() int { return len(f.list) }

// Emails returns the records' emails in file order.
func (f *AccountsFile) Emails() []string {
	out := make([]string, len(f.list))
	for i, o := range f.list {
		out[i] = o.str("email")
	}
	return out
}

// Find returns the index of the account with this email (any case) or
// account_id, or -1.
func (f *AccountsFile) Find(name string) int {
	for i, o := range f.list {
		if strings.EqualFold(o.str("email"), name) || o.str("account_id") == name {
			return i
		}
	}
	return -1
}

// Has reports whether account i has the key.
func (f *AccountsFile) Has(i int, key string) bool {
	if i < 0 || i >= len(f.list) {
		return false
	}
	_, ok := f.list[i].vals[key]
	return ok
}

// Set sets fields of account i; a nil value removes the key.
func (f *AccountsFile) Set(i int, fields map[string]any) error {
	if i < 0 || i >= len(f.list) {
		return ErrNoAccount
	}
	for _, k := range sortedKeys(fields) {
		if fields[k] == nil {
			f.list[i].del(k)
			continue
		}
		if err := f.list[i].set(k, fields[k]); err != nil {
			return fmt.Errorf("field %q: %w", k, err)
		}
	}
	return nil
}

// Add appends an account with the given fields, in the order of keys.
func (f *AccountsFile) Add(keys []string, fields map[string]any) error {
	o := &ordered{vals: map[string]json.RawMessage{}}
	for _, k := range keys {
		if v, ok := fields[k]; ok && v != nil {
			if err := o.set(k, v); err != nil {
				return fmt.Errorf("field %q: %w", k, err)
			}
		}
	}
	f.list = append(f.list, o)
	return nil
}

// Merge sets the given fields of account i and keeps every other key
// (smtp_password, disabled, overrides, "_" comments) with its value and
// place: a field that is already there changes in place, a new one is
// appended in the order of keys, then any others sorted. A nil value
// leaves the old one alone. This is what re-adding an existing account
// does ("overwrite"): it must not drop what the request does not name.
func (f *AccountsFile) Merge(i int, keys []string, fields map[string]any) error {
	if i < 0 || i >= len(f.list) {
		return ErrNoAccount
	}
	o := f.list[i]
	order := slices.Clone(keys)
	for _, k := range sortedKeys(fields) {
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
	}
	for _, k := range order {
		if v, ok := fields[k]; ok && v != nil {
			if err := o.set(k, v); err != nil {
				return fmt.Errorf("field %q: %w", k, err)
			}
		}
	}
	return nil
}

// Remove deletes account i.
func (f *AccountsFile) Remove(i int) error {
	if i < 0 || i >= len(f.list) {
		return ErrNoAccount
	}
	f.list = append(f.list[:i], f.list[i+1:]...)
	return nil
}

// RemoveAll deletes every account (keeping the rest of the file).
func (f *AccountsFile) RemoveAll() { f.list = nil }

// Bytes renders the file, indented with two spaces.
func (f *AccountsFile) Bytes() []byte {
	var list bytes.Buffer
	list.WriteByte('[')
	for i, o := range f.list {
		if i > 0 {
			list.WriteByte(',')
		}
		o.marshal(&list)
	}
	list.WriteByte(']')
	var out bytes.Buffer
	if f.wrapped {
		f.top.vals["accounts"] = list.Bytes()
		var top bytes.Buffer
		f.top.marshal(&top)
		_ = json.Indent(&out, top.Bytes(), "", "  ")
	} else {
		_ = json.Indent(&out, list.Bytes(), "", "  ")
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// EditAccounts is the one way to change accounts.json: under an exclusive
// lock (a lock file next to it, so two writers, two admin requests or a CLI
// and a running proxy, cannot interleave) it reads the file, lets edit
// change it, validates the result with Load (configPath for the provider
// settings, "" for built-in defaults) and, only if it loads, replaces the
// file atomically. An error from edit or from validation changes nothing.
//
// When path is a symlink, the file it points at is edited and the link
// stays, provided only this user can write that file (safefile.Resolve);
// otherwise the edit is refused.
func EditAccounts(path, configPath string, edit func(*AccountsFile) error) error {
	build := func(target string) ([]byte, error) {
		f, err := ReadAccountsFile(target)
		if err != nil {
			return nil, fmt.Errorf("refusing to write: %w", err)
		}
		if err := edit(f); err != nil {
			return nil, err
		}
		return f.Bytes(), nil
	}
	return safefile.Update(path, build, func(tmp string) error {
		_, _, err := Load(LoadOptions{ConfigPath: configPath, AccountsPath: tmp, ConfigExplicit: configPath != "",
			SearchDirs: []string{}, accountsAs: path})
		return err
	})
}

// sortedKeys gives keys new to a record a deterministic order.
func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

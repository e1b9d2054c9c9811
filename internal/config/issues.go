package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Warning is something Load accepted but an operator should look at: an
// unknown key, a plain-text password, a value that was raised to a minimum.
type Warning struct {
	File string // the file the warning is about
	// Account is the account record as `"account_id" (#N)`, N counting
	// records from 1, or `#N` alone for a record without an account_id; ""
	// outside accounts.
	Account string
	Field   string // dotted key path, e.g. "global.smtp.max_line_length"; "" for the whole file
	Message string
}

// String renders the warning as one log line.
func (w Warning) String() string { return describe(w.File, w.Account, w.Field, w.Message) }

// FieldError is one problem that stops Load. Load returns all of them
// joined with errors.Join; use errors.As to get at the first, or
// interface{ Unwrap() []error } to list them.
type FieldError struct {
	File    string // the file the problem is in
	Account string // as in Warning
	Field   string // as in Warning
	Message string
}

func (e *FieldError) Error() string { return describe(e.File, e.Account, e.Field, e.Message) }

// describe formats `file: account "id" (#2): field "f": message`, leaving out
// the parts that are empty.
func describe(file, account, field, msg string) string {
	var b strings.Builder
	if file != "" {
		b.WriteString(file)
		b.WriteString(": ")
	}
	if account != "" {
		b.WriteString("account ")
		b.WriteString(account)
		b.WriteString(": ")
	}
	if field != "" {
		b.WriteString("field ")
		b.WriteString(strconv.Quote(field))
		b.WriteString(": ")
	}
	b.WriteString(msg)
	return b.String()
}

// where says what a problem is about: a file and, inside accounts.json, one
// account record.
type where struct {
	file    string
	account string // account_id as written; may be ""
	index   int    // 1-based position in the accounts list; 0 outside it
}

// label is the Account text of a Warning or FieldError: `"gmail_1" (#2)`,
// or `#2` for a record without an account_id.
func (w where) label() string {
	switch {
	case w.index == 0:
		return ""
	case w.account == "":
		return "#" + strconv.Itoa(w.index)
	default:
		return strconv.Quote(w.account) + " (#" + strconv.Itoa(w.index) + ")"
	}
}

// diag collects the errors and warnings of one Load.
type diag struct {
	errs  []error
	warns []Warning
	// keys, when not nil, records every key the walker asks for, read or
	// ignored, present or not: the set of keys the loader accepts, which a
	// test holds against docs/config.md. Nil in Load.
	keys *keyLog
}

// keyLog is the keys a walk asked for, as dotted paths, apart for
// config.json and for account records.
type keyLog struct {
	config, accounts map[string]keyUse
}

// keyUse says what the loader does with a key.
type keyUse int

const (
	keyRead    keyUse = iota + 1 // parsed into the configuration
	keyIgnored                   // accepted for compatibility, no effect
)

func newKeyLog() *keyLog {
	return &keyLog{config: map[string]keyUse{}, accounts: map[string]keyUse{}}
}

// note records the key at path of an object at.
func (l *keyLog) note(at where, path string, use keyUse) {
	m := l.config
	if at.index > 0 {
		m = l.accounts
	}
	if m[path] != keyRead { // a key read anywhere counts as read
		m[path] = use
	}
}

func (d *diag) errorf(at where, field, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{
		File: at.file, Account: at.label(), Field: field, Message: fmt.Sprintf(format, args...),
	})
}

func (d *diag) warnf(at where, field, format string, args ...any) {
	d.warns = append(d.warns, Warning{
		File: at.file, Account: at.label(), Field: field, Message: fmt.Sprintf(format, args...),
	})
}

package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Default file names, used when LoadOptions leaves a path empty.
const (
	DefaultConfigName   = "config.json"
	DefaultAccountsName = "accounts.json"
)

// LoadOptions says where Load finds its files.
type LoadOptions struct {
	// ConfigPath is the global configuration ("--config"); "" means
	// "config.json". A missing config file means built-in defaults, unless
	// ConfigExplicit is set.
	ConfigPath string
	// AccountsPath is the accounts file ("--accounts"); "" means
	// "accounts.json". A missing accounts file is always an error.
	AccountsPath string
	// ConfigExplicit is set when --config was given on the command line:
	// the operator named a file, so not finding it is an error.
	ConfigExplicit bool
	// SearchDirs are tried in order, with the file's base name, when a
	// path does not exist. nil means DefaultSearchDirs(); an empty,
	// non-nil slice disables the search.
	SearchDirs []string
	// StateDir ("--state-dir") overrides where token state is kept; ""
	// means "global.oauth2.state_dir", else the accounts file's directory.
	StateDir string
	// RedisURL ("--redis") replaces global.cluster's server: cluster mode
	// on that Redis.
	RedisURL string

	// accountsAs is the accounts file that AccountsPath is an edited copy
	// of (EditAccounts): errors name it, and relative key file paths start
	// from its directory, as they will once the copy replaces it.
	accountsAs string
}

// DefaultSearchDirs returns the directories the old tool searched, in its
// order: ".", /etc/xoauth2, /usr/local/etc/xoauth2 and ~/.xoauth2 (left out
// when there is no home directory).
func DefaultSearchDirs() []string {
	dirs := []string{".", "/etc/xoauth2", "/usr/local/etc/xoauth2"}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".xoauth2"))
	}
	return dirs
}

// Load finds, reads, defaults and validates config.json and accounts.json.
// It returns either a complete Snapshot or an error joining every problem
// found (each a *FieldError naming the file, account and field); the
// warnings are returned in both cases.
//
// When the config file holds accounts rather than settings (the old
// "--config accounts.json" usage), it is used as the accounts file with
// built-in provider defaults, AccountsPath is not read, and a warning says
// so.
func Load(opts LoadOptions) (*Snapshot, []Warning, error) {
	d := &diag{}
	dirs := opts.SearchDirs
	if dirs == nil {
		dirs = DefaultSearchDirs()
	}
	cfgName := cmp.Or(opts.ConfigPath, DefaultConfigName)
	accName := cmp.Or(opts.AccountsPath, DefaultAccountsName)

	var cfgDoc any
	cfgPath, err := find(cfgName, dirs)
	cfgOK := false
	switch {
	case errors.Is(err, fs.ErrNotExist) && !opts.ConfigExplicit:
		cfgPath = "" // built-in defaults
	case err != nil:
		d.errs = append(d.errs, err)
	default:
		cfgDoc, cfgOK = readJSON(d, cfgPath)
	}

	snap := &Snapshot{}
	var accDoc any
	accOK := false
	if cfgOK && holdsAccounts(cfgDoc) {
		d.warnf(where{file: cfgPath}, "",
			"config file holds accounts; using it as the accounts file with built-in provider defaults (%s is not read)",
			accName)
		snap.AccountsPath, accDoc, accOK = cfgPath, cfgDoc, true
		cfgPath, cfgDoc, cfgOK = "", nil, false
	} else if accPath, err := find(accName, dirs); err != nil {
		d.errs = append(d.errs, err)
	} else {
		snap.AccountsPath = accPath
		accDoc, accOK = readJSON(d, accPath)
	}
	if accOK {
		warnReadable(d, snap.AccountsPath)
	}

	snap.ConfigPath = cfgPath
	snap.Global, snap.Providers = defaultGlobal(), builtinProviders()
	if cfgOK {
		parseConfig(d, cfgPath, cfgDoc, &snap.Global, snap.Providers)
	}
	if accOK {
		snap.Accounts = parseAccounts(d, cmp.Or(opts.accountsAs, snap.AccountsPath), accDoc, snap.Providers)
	}
	resolveStateDir(&snap.Global.Tokens, opts.StateDir, snap.AccountsPath)
	if opts.RedisURL != "" {
		c := &snap.Global.Cluster
		c.SentinelMaster, c.RedisCluster = "", false
		if err := c.SetURL(opts.RedisURL); err != nil {
			d.errs = append(d.errs, fmt.Errorf("--redis: %w", err))
		}
	}
	if len(d.errs) > 0 {
		return nil, d.warns, errors.Join(d.errs...)
	}
	return snap, d.warns, nil
}

// find returns path if it exists, else the first dir/base(path) that does.
// Only "does not exist" moves the search on: a file that exists but cannot
// be examined (permissions) is an error, never skipped. The error wraps
// fs.ErrNotExist when nothing was found.
func find(path string, dirs []string) (string, error) {
	tried := []string{path}
	ok, err := exists(path)
	if ok || err != nil {
		return path, err
	}
	base := filepath.Base(path)
	for _, dir := range dirs {
		p := filepath.Join(dir, base)
		if filepath.Clean(p) == filepath.Clean(path) {
			continue
		}
		tried = append(tried, p)
		ok, err := exists(p)
		if ok || err != nil {
			return p, err
		}
	}
	return "", &notFoundError{FieldError{File: path, Message: "not found (tried " + strings.Join(tried, ", ") + ")"}}
}

// notFoundError is the FieldError of a file that is nowhere to be found.
type notFoundError struct{ FieldError }

func (e *notFoundError) Unwrap() []error { return []error{&e.FieldError, fs.ErrNotExist} }

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, &FieldError{File: path, Message: "cannot read: " + unwrapPath(err).Error()}
	}
}

// readJSON reads and decodes one file, reporting failures against it.
func readJSON(d *diag, path string) (any, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		d.errorf(where{file: path}, "", "cannot read: %v", unwrapPath(err))
		return nil, false
	}
	doc, err := decodeJSON(data)
	if err != nil {
		d.errorf(where{file: path}, "", "%v", err)
		return nil, false
	}
	return doc, true
}

// unwrapPath drops the *fs.PathError around err: our messages already
// start with the file name.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// warnReadable warns when users other than the owner can read the
// accounts file (its group or everyone): it holds refresh tokens and
// client secrets.
func warnReadable(d *diag, path string) {
	if runtime.GOOS == "windows" {
		return // the mode bits do not describe Windows ACLs
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o044 != 0 {
		who := "its group"
		if fi.Mode().Perm()&0o004 != 0 {
			who = "every user"
		}
		d.warnf(where{file: path}, "", "readable by %s (mode %04o) but holds refresh tokens; chmod 600 it",
			who, fi.Mode().Perm())
	}
}

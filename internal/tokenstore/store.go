package tokenstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// DefaultFileName is the state file's name inside Options.Dir.
const DefaultFileName = "token-state.json"

// Defaults for zero Options fields.
const (
	DefaultFlushInterval = 2 * time.Second
	DefaultLockTimeout   = 10 * time.Second
)

// States an Entry may record. Transient trouble (retrying) is not
// persisted: a restart tries again.
const (
	StateNeedsConsent = "needs_consent" // the provider rejected the credential for good
	StateDisabled     = "disabled"      // an operator disabled the account
)

// Entry is the persisted token state of one account.
type Entry struct {
	// Credential fingerprints the configured credential this entry's
	// refresh-token lineage derives from (client id and refresh token, as
	// package token computes it). When accounts.json changes it, the entry
	// is stale and ignored.
	Credential string
	// Grant fingerprints every setting of the grant (token URL, scope,
	// secret, keys). When it changes, the access token and the verdict in
	// State are dropped, but a rotated refresh token is kept.
	Grant string
	// RefreshToken is the current refresh token when the provider rotated
	// it; empty while the configured one is still current.
	RefreshToken secret.String
	// RefreshVersion is, in cluster mode, the version of the shared token
	// record (Redis) that committed RefreshToken; 0 outside cluster mode.
	// It lets an emptied Redis be re-seeded from the newest copy any
	// proxy holds (docs/CLUSTER.md: Tokens and the account set).
	RefreshVersion int64
	// AccessToken is the last access token, valid until Expiry; empty when
	// none. Obtained is when it was requested.
	AccessToken secret.String
	Expiry      time.Time
	Obtained    time.Time
	// State is "", StateNeedsConsent or StateDisabled; LastError says why,
	// sanitized and secret-free.
	State     string
	LastError string
	// LastUsed is when a client last needed the account's token, so that a
	// restart can warm the accounts that were busy.
	LastUsed time.Time
	// Updated is when the entry last changed; Put and PutSync set it when
	// it is zero. Of two processes' entries for one account, the one
	// updated later wins.
	Updated time.Time
}

// Options configure a Store.
type Options struct {
	// Dir holds the state file; created (mode 0700) when missing. Required.
	Dir string
	// FileName is the file's name in Dir; "" means DefaultFileName.
	FileName string
	// FlushInterval is how often Run writes buffered Puts; 0 means
	// DefaultFlushInterval (2 s).
	FlushInterval time.Duration
	// LockTimeout bounds the wait for another process's write; 0 means
	// DefaultLockTimeout (10 s).
	LockTimeout time.Duration
	// Now is the clock for Entry.Updated; nil means time.Now.
	Now func() time.Time
	// Logger receives warnings (a corrupt file found while writing, a
	// failed background write); nil discards.
	Logger *slog.Logger
}

// Store is the token state of all accounts, in memory and in one file.
type Store struct {
	opts     Options
	path     string
	lockPath string
	log      *slog.Logger

	// writeMu serializes writes to the file; it is taken before mu.
	writeMu sync.Mutex

	mu      sync.Mutex
	entries map[string]Entry
	dirty   map[string]uint64 // account → generation of its latest change not yet written
	gen     uint64            // generation of the latest change
	written uint64            // every change up to this generation is on disk
	// seen is the version of the file this Store last wrote or read;
	// another version on disk means another process (the CLI, a second
	// proxy) wrote since. Guarded by mu.
	seen fileVersion
}

// fileVersion tells versions of the state file apart. Every write is a
// rename of a new file, so the inode alone changes with each; mtime and
// size guard against a filesystem that reuses it at once.
type fileVersion struct {
	ok    bool
	ino   uint64
	size  int64
	mtime time.Time
}

func statVersion(path string) fileVersion {
	fi, err := os.Stat(path)
	if err != nil {
		return fileVersion{}
	}
	return fileVersion{ok: true, ino: inode(fi), size: fi.Size(), mtime: fi.ModTime()}
}

// Open reads the state file in opts.Dir, creating the directory if needed.
// A missing file is an empty state. A file that cannot be parsed is a
// *ParseError and Open fails: the file may hold the only copy of a rotated
// refresh token, so it is never silently replaced.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("token state: no directory")
	}
	opts.FileName = cmp.Or(opts.FileName, DefaultFileName)
	opts.FlushInterval = cmp.Or(opts.FlushInterval, DefaultFlushInterval)
	opts.LockTimeout = cmp.Or(opts.LockTimeout, DefaultLockTimeout)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("token state: %w", err)
	}
	// A state file that is a symlink is read and written where it points
	// (the link stays), if only this user can write that file.
	path, err := safefile.Resolve(filepath.Join(opts.Dir, opts.FileName))
	if err != nil {
		return nil, fmt.Errorf("token state: %w", err)
	}
	s := &Store{
		opts:     opts,
		path:     path,
		lockPath: path + ".lock",
		log:      opts.Logger,
		dirty:    map[string]uint64{},
	}
	unlock, err := safefile.Lock(s.lockPath, opts.LockTimeout)
	if err != nil {
		return nil, fmt.Errorf("token state %s: %w", s.path, err)
	}
	defer unlock()
	safefile.RemoveTemps(s.path) // left by a writer that crashed; we hold the lock
	s.seen = statVersion(s.path)
	if s.entries, err = readFile(s.path); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(s.path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		s.log.Warn("token state file readable by others; setting mode 0600", "file", s.path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
		if err := os.Chmod(s.path, 0o600); err != nil {
			return nil, fmt.Errorf("token state: %w", err)
		}
	}
	return s, nil
}

// Path is the state file: the file a symlink at Dir/FileName points at,
// if it is one.
func (s *Store) Path() string { return s.path }

// Len is the number of accounts with an entry.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Get returns the entry of an account.
func (s *Store) Get(account string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[account]
	return e, ok
}

// Fresh is Get after adopting what another process wrote to the file
// since this Store last wrote or read it: a refresh token rotated by the
// CLI or by another proxy sharing the file. It costs one stat(2) when
// nothing changed, so a Source calls it before every token request: a
// refresh token that another process has replaced must not be sent (a
// provider that rotates may revoke the whole grant when an old one comes
// back). A file that cannot be read leaves the memory as it is.
func (s *Store) Fresh(account string) (Entry, bool) {
	v := statVersion(s.path)
	s.mu.Lock()
	changed := v.ok && v != s.seen
	s.mu.Unlock()
	if changed {
		// Read without the lock: every write is an atomic rename, so the
		// file is always one whole version. The version stat'ed before
		// reading is recorded; a write between the two makes the next
		// call read again.
		if disk, err := readFile(s.path); err == nil {
			s.mu.Lock()
			s.adoptLocked(disk)
			s.seen = v
			s.mu.Unlock()
		} else {
			s.log.Warn("token state file changed but cannot be read; keeping the state in memory", "err", err)
		}
	}
	return s.Get(account)
}

// adoptLocked takes the entries of disk that another process updated later
// than ours, unless ours has a change not yet written. The caller holds mu.
func (s *Store) adoptLocked(disk map[string]Entry) {
	for id, e := range disk {
		if _, dirty := s.dirty[id]; !dirty && e.Updated.After(s.entries[id].Updated) {
			s.entries[id] = e
		}
	}
}

// Put records an entry, to be written by the next Flush (Run flushes
// every FlushInterval, Close at the end). A crash before then loses it, so
// use it only for state that can be fetched again.
func (s *Store) Put(account string, e Entry) {
	s.record(account, e)
}

// PutSync records an entry and returns once it is on disk, together with
// every other change recorded before it. Use it when losing the entry
// would lose a credential: a rotated refresh token.
func (s *Store) PutSync(account string, e Entry) error {
	return s.syncTo(s.record(account, e))
}

func (s *Store) record(account string, e Entry) uint64 {
	if e.Updated.IsZero() {
		e.Updated = s.opts.Now()
	}
	e.Expiry, e.Obtained, e.LastUsed, e.Updated = utc(e.Expiry), utc(e.Obtained), utc(e.LastUsed), utc(e.Updated)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.entries[account] = e
	s.dirty[account] = s.gen
	return s.gen
}

// Flush writes every recorded change now.
func (s *Store) Flush() error {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	return s.syncTo(g)
}

// syncTo returns once every change up to generation g is on disk. A caller
// that finds its change written by another caller's write returns at once:
// concurrent PutSyncs share writes.
func (s *Store) syncTo(g uint64) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	done := s.written >= g
	s.mu.Unlock()
	if done {
		return nil
	}
	return s.writeLocked()
}

// writeLocked writes the whole state under the file lock, merged with what
// another process may have written meanwhile. The caller holds writeMu.
func (s *Store) writeLocked() error {
	s.mu.Lock()
	upTo := s.gen
	batch := make(map[string]uint64, len(s.dirty))
	for id, g := range s.dirty {
		batch[id] = g
	}
	mem := make(map[string]Entry, len(s.entries))
	for id, e := range s.entries {
		mem[id] = e
	}
	s.mu.Unlock()

	merged, v, err := s.writeFile(mem)
	if err != nil {
		return fmt.Errorf("token state %s: %w", s.path, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for id, g := range batch {
		if s.dirty[id] == g {
			delete(s.dirty, id)
		}
	}
	// Adopt entries another process wrote later than ours, unless ours
	// changed again while the file was being written.
	s.adoptLocked(merged)
	s.seen = v
	s.written = max(s.written, upTo)
	return nil
}

// writeFile merges mem with the file and replaces the file, holding the
// file lock throughout. It returns the merged state and the version of
// the file it wrote (stat'ed under the lock, so no other writer's).
func (s *Store) writeFile(mem map[string]Entry) (map[string]Entry, fileVersion, error) {
	unlock, err := safefile.Lock(s.lockPath, s.opts.LockTimeout)
	if err != nil {
		return nil, fileVersion{}, err
	}
	defer unlock()
	disk, err := readFile(s.path)
	var pe *ParseError
	switch {
	case errors.Is(err, ErrVersion):
		return nil, fileVersion{}, err // a newer proxy's file: never overwrite it
	case errors.As(err, &pe):
		s.log.Error("token state file corrupt; replacing it with this process's state", "file", s.path, "err", pe.Err)
		disk = map[string]Entry{}
	case err != nil:
		return nil, fileVersion{}, err
	}
	for id, e := range mem {
		if d, ok := disk[id]; !ok || !d.Updated.After(e.Updated) {
			disk[id] = e
		}
	}
	data, err := Encode(disk)
	if err != nil {
		return nil, fileVersion{}, err
	}
	if err := safefile.WriteAtomic(s.path, data, nil); err != nil {
		return nil, fileVersion{}, fmt.Errorf("write token state: %w", err)
	}
	return disk, statVersion(s.path), nil
}

// Run writes buffered changes every FlushInterval until ctx ends, then
// writes what is left and returns. A failed write is logged and retried
// at the next interval.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if s.pending() {
				if err := s.Flush(); err != nil {
					s.log.Error("token state not written; retrying", "err", err)
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// pending reports whether some change is not yet on disk.
func (s *Store) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dirty) > 0
}

// Close writes every change not yet on disk. The Store stays usable; Close
// only marks the point where nothing more must be lost.
func (s *Store) Close() error {
	if !s.pending() {
		return nil
	}
	return s.Flush()
}

package importer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
)

// FileStore saves records to accounts.json with config.EditAccounts: under
// the file's lock, validated by the start-up loader against ConfigPath's
// provider settings, written atomically. A running proxy sees the change
// at its next reload (SIGHUP or POST /admin/reload).
type FileStore struct {
	AccountsPath string
	ConfigPath   string // "" for the built-in provider defaults
}

// ErrExists is the error of a record whose email or account_id is taken.
var ErrExists = errors.New("account already exists (use --overwrite to update it)")

// maxEditRounds bounds how often Add retries after dropping the records
// the loader refused; each round reads and validates the whole file once.
const maxEditRounds = 3

// Add implements Store. All records go in one edit; when the loader
// refuses the result, the records it names are failed with its message and
// the rest are tried again, so one bad record costs one more round, not
// one file write per record. A problem the loader finds elsewhere in the
// file fails every record: nothing is written over a file that does not
// load.
func (s FileStore) Add(_ context.Context, recs []config.AccountRecord, overwrite bool, progress func(n int)) []error {
	errs := make([]error, len(recs))
	pending := make([]int, len(recs))
	for i := range pending {
		pending[i] = i
	}
	for round := 1; len(pending) > 0; round++ {
		tried := map[int]int{} // position in the file (from 1) → record
		var added []int
		err := config.EditAccounts(s.AccountsPath, s.ConfigPath, func(f *config.AccountsFile) error {
			clear(tried)
			added = added[:0]
			for _, i := range pending {
				pos, err := upsert(f, &recs[i], overwrite)
				if err != nil {
					errs[i] = err
					continue
				}
				tried[pos] = i
				added = append(added, i)
			}
			if len(added) == 0 {
				return errNothing
			}
			return nil
		})
		if err == nil || errors.Is(err, errNothing) {
			break
		}
		blamed := blame(err, tried, errs)
		if blamed == 0 || round == maxEditRounds {
			for _, i := range pending {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("not saved: %w", err)
				}
			}
			break
		}
		pending = pending[:0]
		for _, i := range added {
			if errs[i] == nil {
				pending = append(pending, i)
			}
		}
	}
	if progress != nil {
		progress(len(recs))
	}
	return errs
}

var errNothing = errors.New("nothing to add")

// upsert adds r, or, when overwrite is set, merges it into the record with
// its email or account_id (config.AccountsFile.Upsert: the rest of the
// record stays, and a value Normalise made up does not replace one the
// record has), and returns its position in the file, from 1.
func upsert(f *config.AccountsFile, r *config.AccountRecord, overwrite bool) (int, error) {
	i, err := f.Upsert(r, overwrite)
	if errors.Is(err, config.ErrAccountExists) {
		return 0, ErrExists
	}
	return i + 1, err
}

// blame gives each *config.FieldError of a refused edit to the record at
// the position it names, and returns how many records it blamed.
func blame(err error, tried map[int]int, errs []error) int {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	n := 0
	for _, e := range list {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			continue
		}
		i, ok := tried[position(fe.Account)]
		if !ok {
			continue
		}
		msg := fe.Message
		if fe.Field != "" {
			msg = fe.Field + ": " + msg
		}
		if errs[i] == nil {
			n++
			errs[i] = errors.New(msg)
		} else {
			errs[i] = fmt.Errorf("%w; %s", errs[i], msg)
		}
	}
	return n
}

// position reads N from a FieldError's Account, `"id" (#N)` or `#N`; 0
// when there is none.
func position(label string) int {
	i := strings.LastIndexByte(label, '#')
	if i < 0 {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSuffix(label[i+1:], ")"))
	if err != nil {
		return 0
	}
	return n
}

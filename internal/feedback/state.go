package feedback

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"
)

// progress is where the collector got to in one account's mailbox, and
// the account's recent hard bounces.
type progress struct {
	UIDValidity uint32      `json:"uid_validity"`
	LastUID     uint32      `json:"last_uid"`
	Hard        []time.Time `json:"hard_bounces,omitempty"` // last 24 h, since the last resume
	ResumedAt   time.Time   `json:"resumed_at,omitzero"`
}

// maxHard bounds an account's remembered hard bounces.
const maxHard = 100_000

// store is the persisted progress of every account, by account_id.
type store struct {
	path string
	mu   sync.Mutex
	m    map[string]*progress
}

func loadStore(path string) (*store, error) {
	s := &store{path: path, m: map[string]*progress{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("feedback state: %w", err)
	}
	var f struct {
		Version  int                  `json:"version"`
		Accounts map[string]*progress `json:"accounts"`
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		return nil, fmt.Errorf("feedback state %s: unreadable (version %d): %v", path, f.Version, err)
	}
	for id, p := range f.Accounts {
		if p != nil {
			s.m[id] = p
		}
	}
	return s, nil
}

// get returns a copy of id's progress.
func (s *store) get(id string) progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.m[id]; p != nil {
		c := *p
		c.Hard = append([]time.Time(nil), p.Hard...)
		return c
	}
	return progress{}
}

// update changes id's progress and saves the whole file atomically.
func (s *store) update(id string, f func(p *progress)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.m[id]
	if p == nil {
		p = &progress{}
		s.m[id] = p
	}
	f(p)
	if len(p.Hard) > maxHard {
		p.Hard = p.Hard[len(p.Hard)-maxHard:]
	}
	b, err := json.Marshal(struct {
		Version  int                  `json:"version"`
		Accounts map[string]*progress `json:"accounts"`
	}{1, s.m})
	if err != nil {
		return err
	}
	if err := safefile.Replace(s.path, b); err != nil {
		return fmt.Errorf("feedback state: %w", err)
	}
	return nil
}

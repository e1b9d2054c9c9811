package safefile

import "fmt"

// Update is the whole write of a file that others may write too: it
// resolves path (Resolve: through a symlink to a file only this user can
// write, and the link stays), takes the writers' lock next to the resolved
// file (so that writers naming it by different links exclude each other),
// calls build with the resolved path to produce the new contents (it may
// read the old ones: no other writer runs meanwhile) and replaces the file
// with them (WriteAtomic, with check). An error from build or check leaves
// the file as it was. Waiting for the lock has no limit: its holders only
// read, validate and write a local file.
func Update(path string, build func(target string) ([]byte, error), check func(tmp string) error) error {
	target, err := Resolve(path)
	if err != nil {
		return fmt.Errorf("refusing to write: %w", err)
	}
	unlock, err := Lock(target+".lock", 0)
	if err != nil {
		return err
	}
	defer unlock()
	data, err := build(target)
	if err != nil {
		return err
	}
	return WriteAtomic(target, data, check)
}

// Replace replaces path with data under the same rules as Update: for
// state files the proxy owns (budgets.json).
func Replace(path string, data []byte) error {
	return Update(path, func(string) ([]byte, error) { return data, nil }, nil)
}

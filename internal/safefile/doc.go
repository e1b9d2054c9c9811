// Package safefile holds the rules for writing the files where the proxy
// keeps credentials and state (accounts.json, token-state.json,
// budgets.json), so that config and tokenstore write them the same way.
//
// Resolve says which file a write of a path must replace. A path that is
// a symlink (an operator who keeps accounts.json in /srv/conf and links it
// into /etc/xoauth2) is followed, so that the write lands in the file the
// link points at and the link stays; but only when every link in the chain
// belongs to this user or root and the file at its end is a regular file of
// this user's that nobody else may write. Anything else is refused: a link
// planted by someone else must not make the proxy overwrite a file of its
// choosing, and a file others can write is not one to keep secrets in.
//
// Lock takes the exclusive flock(2) that serializes writers of one file,
// across processes, on a ".lock" file next to it. The lock file is opened
// with O_NOFOLLOW and must be a regular file, so that a symlink planted in
// its place cannot make a proxy running as root create or lock a file
// elsewhere.
//
// WriteAtomic replaces a file durably: a temporary file (mode 0600) in the
// same directory, fsync, rename, fsync of the directory. A crash leaves the
// old file or the new one. Call Resolve first, then Lock the resolved
// path's ".lock" file, then WriteAtomic the resolved path.
//
// The functions keep no state and are safe for concurrent use; mutual
// exclusion between writers is the lock's. On systems without flock(2)
// Lock does nothing and Resolve follows links without checking owners or
// modes: the proxy is built and tested for Unix.
package safefile

package smtpd

import "syscall"

const peekSupported = true

// peekReadable reports whether the socket has bytes to read or an end or
// error to report (a read will then not block); false makes the poller
// wait for readability and ask again.
func (c *conn) peekReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}

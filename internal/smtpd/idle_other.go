//go:build !linux

package smtpd

const peekSupported = false

// peekReadable is not used off Linux: buffers stay with idle connections.
func (c *conn) peekReadable(uintptr) bool { return true }

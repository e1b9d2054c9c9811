// Package service wires the parts of the proxy together: it loads the
// configuration, builds the account registry (token sources and session
// pools), starts the SMTP listener with the relay (or the dry-run backend)
// behind it, runs the pool sweeper, and shuts all of it down in order.
// It owns every goroutine it starts; Run returns only after they ended.
package service

// Package loadgen is the client side used by the demo, the benchmark and
// end-to-end tests: a small SMTP submission client (EHLO, AUTH PLAIN,
// pipelined MAIL/RCPT/DATA when the server offers PIPELINING) and a runner
// that drives many such connections for a bounded count or time.
package loadgen

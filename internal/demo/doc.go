// Package demo runs the embedded default: a fake provider (token endpoint
// and an SMTP server that really verifies XOAUTH2 tokens, with STARTTLS), a
// generated account set, the proxy in front of it, and a batch of test
// messages through the proxy. It prints what happened. Nothing leaves the
// loopback interface.
package demo

// Package proxyproto reads the PROXY protocol header that a load balancer
// (HAProxy, nginx, AWS NLB, ...) puts in front of a TCP connection to tell
// the server who the client really is: version 1 (one text line) and
// version 2 (binary), as specified in HAProxy's "The PROXY protocol"
// (doc/proxy-protocol.txt, versions 1 and 2).
//
// Read takes the header off a *bufio.Reader and consumes nothing after it,
// so the SMTP session continues on the same reader. It does not decide
// whom to believe: the caller reads a header only from connections whose
// peer is a configured load balancer (smtpd does), because anyone else
// could claim any address. Header.AppendV1 and AppendV2 write headers,
// for load-balancer stand-ins in tests and tools.
//
// A LOCAL header (v2) or "PROXY UNKNOWN" (v1) carries no client address:
// the balancer speaks for itself (health checks), and the specification
// says to use the connection's own addresses; Header.Local reports it.
// TLVs of version 2 are skipped. Read is a pure function of its input and
// safe for concurrent use on different readers.
package proxyproto

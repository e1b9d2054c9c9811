package config

import (
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// IsLoopbackHost reports whether host, a name or an IP address without a
// port (brackets around an IPv6 address are allowed), is "localhost" or a
// loopback address: 127.0.0.0/8, ::1, or an IPv4-mapped loopback address.
// Cleartext to such a host never leaves the machine, which is why http://
// token URLs and smtp_tls "none" are allowed only there.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// endpointError says what is wrong with a host:port, or "" when nothing is.
func endpointError(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return `must be host:port (e.g. "smtp.gmail.com:587"): ` + err.Error()
	}
	if host == "" {
		return "host is empty"
	}
	if strings.ContainsAny(host, " \t/") {
		return "host " + strconv.Quote(host) + " is not a host name or IP address"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "port " + strconv.Quote(port) + " must be a number from 1 to 65535"
	}
	return ""
}

func checkEndpoint(o *object, key, addr string) {
	if msg := endpointError(addr); msg != "" {
		o.errorf(key, "%s", msg)
	}
}

// tokenURLError says what is wrong with a token endpoint, or "" when
// nothing is. The request carries the refresh token and client secret, so
// it must be https://, except to a loopback host (a local fake provider).
func tokenURLError(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "not a URL: " + err.Error()
	}
	if u.Host == "" || u.Hostname() == "" {
		return "must be an absolute https:// URL, not " + strconv.Quote(raw)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && IsLoopbackHost(u.Hostname()):
	default:
		return "must be https:// (http:// only to a loopback host), not " + strconv.Quote(raw)
	}
	if u.User != nil {
		return "must not carry a user name or password"
	}
	return ""
}

func checkTokenURL(o *object, key, raw string) {
	if msg := tokenURLError(raw); msg != "" {
		o.errorf(key, "%s", msg)
	}
}

// checkCleartext refuses smtp_tls "none" unless the endpoint is on this
// machine: XOAUTH2 sends a bearer token, which must not cross a network in
// the clear.
func checkCleartext(o *object, key, addr string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || IsLoopbackHost(host) {
		return // a malformed endpoint is reported on its own key
	}
	o.errorf(key, `"none" (cleartext) is allowed only to a loopback host, not %q`, host)
}

// emailError says what is wrong with an account's address, or "" when
// nothing is. The check is deliberately loose: the provider is the judge of
// its mailboxes, we only need a local part and a domain.
func emailError(email string) string {
	local, domain, ok := strings.Cut(email, "@")
	switch {
	case !ok || strings.Contains(domain, "@"):
		return "must contain exactly one @, not " + strconv.Quote(email)
	case local == "" || domain == "":
		return "needs a local part and a domain, not " + strconv.Quote(email)
	case strings.ContainsAny(email, " \t\r\n<>"):
		return "must not contain spaces or angle brackets: " + strconv.Quote(email)
	}
	return ""
}

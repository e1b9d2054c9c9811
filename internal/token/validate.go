package token

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// ValidateURL checks a token endpoint URL. It must be absolute https://, or
// http:// to a loopback address ("localhost", 127.0.0.0/8, ::1) for fakes
// and local test servers: the refresh token and client secret travel in the
// request body. User info in the URL is refused, as credentials belong in
// the Config. Errors never repeat the URL itself.
func ValidateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole input
		}
		return fmt.Errorf("token url: %w", err)
	}
	if u.User != nil {
		return errors.New("token url: must not contain user info")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("token url: must be absolute with a host")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("token url: http:// is allowed only to a loopback address; use https://")
	default:
		return fmt.Errorf("token url: scheme %q not allowed; use https://", u.Scheme)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

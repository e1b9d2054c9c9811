package reply_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
)

func TestAppend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    reply.Reply
		want string
	}{
		{"single", reply.New(250, "2.0.0", "ok"), "250 2.0.0 ok\r\n"},
		{"no enhanced", reply.New(220, "", "hi"), "220 hi\r\n"},
		{"multi", reply.Reply{Code: 250, Lines: []string{"a", "b", "c"}}, "250-a\r\n250-b\r\n250 c\r\n"},
		{"multi enhanced", reply.Reply{Code: 550, Enhanced: "5.7.1", Lines: []string{"x", "y"}}, "550-5.7.1 x\r\n550 5.7.1 y\r\n"},
		{"crlf injection", reply.New(451, "4.0.0", "a\r\n250 ok"), "451 4.0.0 a  250 ok\r\n"},
		{"empty", reply.Reply{Code: 354}, "354 \r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := string(tc.r.Append(nil)); got != tc.want {
				t.Errorf("Append = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFromError(t *testing.T) {
	t.Parallel()
	r := reply.New(552, "5.3.4", "too big")
	if got := reply.FromError(fmt.Errorf("wrap: %w", r), "x"); got.Code != 552 {
		t.Errorf("wrapped reply lost: %v", got)
	}
	got := reply.FromError(errors.New("open /etc/secret: denied"), "c1.m2")
	if got.Code != 451 || got.Enhanced != "4.3.0" || got.Text() != "local error, try again later (ref c1.m2)" {
		t.Errorf("generic = %v", got)
	}
	local := reply.New(454, "4.7.0", "Temporary authentication failure")
	if got := reply.FromErrorOr(errors.New("internal"), local); got.Code != 454 || got.Text() != local.Text() {
		t.Errorf("FromErrorOr, local failure = %v, want %v", got, local)
	}
	if got := reply.FromErrorOr(fmt.Errorf("wrap: %w", &r), local); got.Code != 552 {
		t.Errorf("FromErrorOr lost a *Reply in the chain: %v", got)
	}
}

func TestSplitEnhanced(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code      int
		in        string
		enh, rest string
	}{
		{250, "2.1.0 OK", "2.1.0", "OK"},
		{550, "5.7.1 denied here", "5.7.1", "denied here"},
		{550, "2.1.0 mismatch", "", "2.1.0 mismatch"},
		{250, "OK", "", "OK"},
		{250, "2.0.0", "2.0.0", ""},
		{421, "4.7.0x bad", "", "4.7.0x bad"},
		{550, "5.123.456 three digits", "5.123.456", "three digits"},
		{550, "5.1234.0 four", "", "5.1234.0 four"},
		{550, "5.1.1234 four", "", "5.1.1234 four"},
		{550, "55.1.1 two-digit class", "", "55.1.1 two-digit class"},
		{550, "5..1 empty", "", "5..1 empty"},
		{550, "5.1. empty", "", "5.1. empty"},
		{550, "5.1 two groups", "", "5.1 two groups"},
		{550, "5.1.1.1 four groups", "", "5.1.1.1 four groups"},
		{550, ".5.1.1 leading dot", "", ".5.1.1 leading dot"},
		{550, "5.a.1 letter", "", "5.a.1 letter"},
		{550, "", "", ""},
	}
	for _, tc := range tests {
		e, r := reply.SplitEnhanced(tc.code, tc.in)
		if e != tc.enh || r != tc.rest {
			t.Errorf("SplitEnhanced(%d,%q) = %q,%q want %q,%q", tc.code, tc.in, e, r, tc.enh, tc.rest)
		}
	}
}

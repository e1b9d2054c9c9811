package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// ErrBadRecipient: a test message's recipient is not one plain address.
var ErrBadRecipient = errors.New("the recipient must be one address, like name@example.com")

// SendTest implements console.Backend: one short message from account a
// to rcpt through the relay, as a client's message goes (the account's
// checks, budget and session lease), and the final reply, or the first
// refusal. Errors are only for what never reached the relay.
func (s *Service) SendTest(ctx context.Context, a *account.Account, rcpt string) (reply.Reply, error) {
	addr, err := mail.ParseAddress(rcpt)
	if err != nil || addr.Address != rcpt || len(rcpt) > 254 || strings.ContainsAny(rcpt, "\r\n<>") {
		return reply.Reply{}, ErrBadRecipient
	}
	if s.Relay == nil {
		return reply.Reply{}, errors.New("dry-run: no message goes upstream")
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	ci := &smtpd.ConnInfo{ID: "console-" + hex.EncodeToString(id[:]), Helo: "console"}
	txn, err := s.Relay.SenderFor(a, "console").Begin(ctx, ci)
	if err != nil {
		return reply.FromError(err, ci.ID), nil
	}
	defer txn.Close()
	replies := txn.Envelope(ctx, []smtpd.Command{
		{Verb: smtpd.VerbMail, Addr: a.Cfg.Email}, {Verb: smtpd.VerbRcpt, Addr: rcpt}, {Verb: smtpd.VerbData},
	})
	for i, rp := range replies {
		if (i < 2 && !rp.Positive()) || (i == 2 && rp.Code != 354) {
			return rp, nil
		}
	}
	now := time.Now().UTC()
	body := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: xoauth2-proxy test message\r\nDate: %s\r\n"+
		"Message-ID: <%s@xoauth2-proxy>\r\n\r\nA test message sent from the xoauth2-proxy console at %s.\r\n",
		a.Cfg.Email, rcpt, now.Format(time.RFC1123Z), ci.ID, now.Format(time.RFC3339))
	return txn.Data(ctx, strings.NewReader(body)), nil
}

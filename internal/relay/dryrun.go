package relay

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/reply"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/smtpd"
)

// DryRun implements smtpd.Backend without any upstream: AUTH is checked
// as usual, every command is accepted and every message is read, logged as
// dry-run and discarded. It never contacts a provider, not even for a
// token (COMPAT.md defect 12).
type DryRun struct {
	reg *account.Registry
	log *slog.Logger
}

// NewDryRun returns a dry-run backend.
func NewDryRun(reg *account.Registry, log *slog.Logger) *DryRun {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DryRun{reg: reg, log: log}
}

// Login implements smtpd.Backend.
func (d *DryRun) Login(ctx context.Context, c *smtpd.ConnInfo, user, pass string) (smtpd.Sender, error) {
	a, err := d.reg.Authenticate(ctx, user, pass, c.Remote.Addr())
	if err != nil {
		return nil, err
	}
	return &drySender{d: d, a: a}, nil
}

// AuthKey implements smtpd.AuthKeyer: failed AUTHs count by account.
func (d *DryRun) AuthKey(user string) string { return d.reg.AuthKey(user) }

type drySender struct {
	d *DryRun
	a *account.Account
}

func (s *drySender) Name() string { return s.a.Cfg.ID }

func (s *drySender) Begin(_ context.Context, c *smtpd.ConnInfo) (smtpd.Txn, error) {
	return &dryTxn{s: s, c: c, start: time.Now()}, nil
}

type dryTxn struct {
	s     *drySender
	c     *smtpd.ConnInfo
	start time.Time
	from  string
	rcpts int
	size  int64
	done  bool
}

func (t *dryTxn) Envelope(_ context.Context, cmds []smtpd.Command) []reply.Reply {
	out := make([]reply.Reply, len(cmds))
	for i, c := range cmds {
		switch c.Verb {
		case smtpd.VerbMail:
			t.from = c.Addr
			out[i] = reply.New(250, "2.1.0", "OK (dry-run)")
		case smtpd.VerbRcpt:
			t.rcpts++
			out[i] = reply.New(250, "2.1.5", "OK (dry-run)")
		case smtpd.VerbData:
			out[i] = reply.New(354, "", "Send message (dry-run), end with <CR><LF>.<CR><LF>")
		}
	}
	return out
}

func (t *dryTxn) Data(_ context.Context, r io.Reader) reply.Reply {
	n, err := io.Copy(io.Discard, r)
	t.size = n
	if err != nil {
		return reply.FromError(err, t.c.ID)
	}
	t.done = true
	return reply.New(250, "2.0.0", "OK: dry-run, message discarded")
}

func (t *dryTxn) Close() {
	if !t.done {
		return
	}
	t.s.d.log.Info("message", "dry_run", true, "conn_id", t.c.ID, "remote", t.c.Remote.String(),
		"account", t.s.a.Cfg.ID, "from", t.from, "rcpts", t.rcpts, "size", t.size,
		"duration_ms", time.Since(t.start).Milliseconds())
}

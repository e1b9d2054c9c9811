package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/loadgen"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/service"
)

// Options configure a demo run.
type Options struct {
	Dir         string // where the generated files go; "" = a temporary directory
	Accounts    int    // default 20
	Messages    int    // default 2000
	Connections int    // client connections; default 10
	Port        int    // proxy SMTP port; 0 = any free port
	KeepRunning bool   // after the batch, keep serving until ctx ends
	Out         io.Writer
	Logger      *slog.Logger
}

// Password is the SMTP AUTH password of every demo account.
const Password = "demo-password"

// Run executes the demo.
func Run(ctx context.Context, o Options) error {
	if o.Accounts <= 0 {
		o.Accounts = 20
	}
	if o.Messages < 0 {
		o.Messages = 0
	} else if o.Messages == 0 {
		o.Messages = 2000
	}
	if o.Connections <= 0 {
		o.Connections = 10
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "xoauth2-proxy-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	tlsCfg, _, caPEM, err := fakeprovider.SelfSignedTLS("127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	fp, err := fakeprovider.Start(fakeprovider.Options{
		TLSConfig:         tlsCfg,
		RequireTLSForAuth: true,
		DiscardBodies:     true,
		Logger:            o.Logger.With("component", "fakeprovider"),
	})
	if err != nil {
		return err
	}
	defer fp.Close()

	caFile := filepath.Join(o.Dir, "fake-provider-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return err
	}
	emails, err := writeFiles(o.Dir, fp, o.Accounts, caFile)
	if err != nil {
		return err
	}
	svc, err := service.New(service.Options{
		Load: config.LoadOptions{
			ConfigPath:     filepath.Join(o.Dir, "config.json"),
			AccountsPath:   filepath.Join(o.Dir, "accounts.json"),
			ConfigExplicit: true,
			SearchDirs:     []string{},
		},
		Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port)),
		Logger: o.Logger,
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(runCtx) }()
	addr := svc.Addr().String()

	fmt.Fprintf(o.Out, "xoauth2-proxy demo\n")
	fmt.Fprintf(o.Out, "  fake provider: SMTP %s (STARTTLS, verifies XOAUTH2), token endpoint %s\n", fp.SMTPAddr(), fp.TokenURL())
	fmt.Fprintf(o.Out, "  proxy:         SMTP %s, %d accounts (files in %s)\n", addr, o.Accounts, o.Dir)
	if o.Messages > 0 {
		fmt.Fprintf(o.Out, "  sending %d messages over %d client connections...\n", o.Messages, o.Connections)
		start := time.Now()
		ok, failed := send(ctx, addr, emails, o.Messages, o.Connections)
		el := time.Since(start)
		if err := waitDelivered(ctx, fp, ok); err != nil {
			fmt.Fprintf(o.Out, "  warning: %v\n", err)
		}
		st := fp.Stats()
		fmt.Fprintf(o.Out, "\nresults\n")
		fmt.Fprintf(o.Out, "  sent by client:                 %d\n", o.Messages)
		fmt.Fprintf(o.Out, "  accepted by proxy (250):        %d\n", ok)
		fmt.Fprintf(o.Out, "  refused by proxy (4xx/5xx/err): %d\n", failed)
		fmt.Fprintf(o.Out, "  delivered at fake provider:     %d\n", st.Messages)
		fmt.Fprintf(o.Out, "  upstream sessions (logins):     %d\n", st.Logins)
		fmt.Fprintf(o.Out, "  token requests:                 %d\n", st.TokenRequests)
		fmt.Fprintf(o.Out, "  elapsed %.2fs, %.0f msgs/s\n", el.Seconds(), float64(ok)/el.Seconds())
		if int64(ok) != st.Messages {
			stop()
			<-errc
			return fmt.Errorf("demo: proxy accepted %d messages but the provider has %d", ok, st.Messages)
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	fmt.Fprintf(o.Out, "\ntry it with swaks:\n  swaks --server 127.0.0.1:%s --auth PLAIN --auth-user %s --auth-password %s \\\n        --from %s --to someone@example.net\n", port, emails[0], Password, emails[0])
	if o.KeepRunning {
		fmt.Fprintf(o.Out, "\nproxy keeps running (Ctrl-C to stop)\n")
		<-ctx.Done()
	} else {
		fmt.Fprintf(o.Out, "(run with --keep-running to keep the proxy up for that)\n")
	}
	stop()
	return <-errc
}

func writeFiles(dir string, fp *fakeprovider.Provider, n int, caFile string) ([]string, error) {
	// One hash for all accounts; the minimum cost keeps start-up fast.
	hash, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	type acct struct {
		AccountID     string `json:"account_id"`
		Email         string `json:"email"`
		Provider      string `json:"provider"`
		ClientID      string `json:"client_id"`
		ClientSecret  string `json:"client_secret"`
		RefreshToken  string `json:"refresh_token"`
		OAuthTokenURL string `json:"oauth_token_url"`
		OAuthEndpoint string `json:"oauth_endpoint"`
		SMTPPassword  string `json:"smtp_password"`
	}
	var accts []acct
	var emails []string
	for i := 1; i <= n; i++ {
		email := fmt.Sprintf("sender%03d@demo.example", i)
		rt := fmt.Sprintf("demo-refresh-%03d", i)
		fp.AddAccount(fakeprovider.Account{Email: email, ClientID: "demo-client", ClientSecret: "demo-secret", RefreshToken: rt})
		accts = append(accts, acct{
			AccountID: fmt.Sprintf("demo_%03d", i), Email: email, Provider: "gmail",
			ClientID: "demo-client", ClientSecret: "demo-secret", RefreshToken: rt,
			OAuthTokenURL: fp.TokenURL(), OAuthEndpoint: fp.SMTPAddr(), SMTPPassword: string(hash),
		})
		emails = append(emails, email)
	}
	b, err := json.MarshalIndent(map[string]any{"_comment": "generated by xoauth2-proxy demo", "accounts": accts}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts.json"), b, 0o600); err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"_comment": "generated by xoauth2-proxy demo",
		"global": map[string]any{
			"smtp": map[string]any{"server_hostname": "xoauth2-proxy.demo", "upstream_ca_file": caFile},
		},
	}
	b, err = json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return emails, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}

// send spreads msgs messages over conns connections, round robin over the
// accounts, and returns how many got 250 and how many did not.
func send(ctx context.Context, addr string, emails []string, msgs, conns int) (ok, failed int) {
	var next, nOK, nFail atomic.Int64
	var wg sync.WaitGroup
	body := []byte("Subject: xoauth2-proxy demo\r\nFrom: demo\r\n\r\nHello from the xoauth2-proxy demo.\r\n.leading dot line\r\n")
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			email := emails[w%len(emails)]
			c, err := loadgen.Dial(ctx, addr, 30*time.Second)
			if err != nil {
				return
			}
			defer c.Quit()
			if err := c.Auth(email, Password); err != nil {
				return
			}
			for next.Add(1) <= int64(msgs) {
				res, err := c.Send(email, []string{"rcpt@example.net"}, body)
				if err != nil {
					nFail.Add(1)
					return
				}
				if res.OK() {
					nOK.Add(1)
				} else {
					nFail.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	return int(nOK.Load()), msgs - int(nOK.Load())
}

func waitDelivered(ctx context.Context, fp *fakeprovider.Provider, n int) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return fp.WaitMessages(wctx, n)
}

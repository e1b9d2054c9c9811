package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/config"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/oauthflow"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/onboarding"
)

// authorize runs the consent for one account on this machine and stores
// its refresh token (issue 13).
func (a *accountsCmd) authorize(ctx context.Context, args []string) error {
	fs := a.flags("authorize", "usage: xoauth2-proxy accounts authorize [flags] EMAIL|ACCOUNT_ID\n\n"+
		"Gets the mailbox owner's consent for the account and stores its refresh token in accounts.json.\n"+
		"It prints an address to open in a browser (and opens one when this machine has a display).\n"+
		"The provider sends the browser back to 127.0.0.1 on this machine; on another machine that\n"+
		"page fails to load: paste the address it ended on here. --device (Microsoft only) shows a\n"+
		"code to enter at the provider's device page instead. The client is the provider's oauth_app\n"+
		"(or the account's own client_id); the address that signs in must be the account's email.",
		"xoauth2-proxy accounts authorize --accounts /etc/xoauth2/accounts.json sales@example.com")
	device := fs.Bool("device", false, "use the device authorization grant (Microsoft only)")
	noBrowser := fs.Bool("no-browser", false, "do not try to open a browser")
	timeout := fs.Duration("timeout", 15*time.Minute, "how long to wait for the consent")
	names, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return errors.New("accounts authorize: give one email or account id")
	}
	if a.adminURL != "" {
		return errors.New("accounts authorize: works on the files (no --admin-url); for a remote owner use accounts invite")
	}
	snap, err := a.load(false)
	if err != nil {
		return err
	}
	acct := findAccount(snap, names[0])
	if acct == nil {
		return fmt.Errorf("accounts authorize %s: %w", names[0], config.ErrNoAccount)
	}
	app, err := onboarding.AppFor(acct)
	if err != nil {
		return fmt.Errorf("accounts authorize %s: %w", acct.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var g oauthflow.Grant
	if *device {
		g, err = app.Device(ctx, func(d oauthflow.DeviceCode) {
			fmt.Fprintf(a.stdout, "On any device, open %s and enter the code %s, then sign in as %s.\nWaiting...\n",
				d.VerificationURI, d.UserCode, acct.Email)
		})
	} else {
		var opened *exec.Cmd
		defer func() {
			if opened != nil {
				cancel()
				_ = opened.Wait()
			}
		}()
		g, err = app.Loopback(ctx, acct.Email, oauthflow.Prompt{
			Show: func(u string) {
				fmt.Fprintf(a.stdout, "Open this address in a browser and sign in as %s:\n\n  %s\n\n"+
					"Waiting for the provider to send the browser back to this machine. From a browser on another\n"+
					"machine, copy the address its page ended on (http://127.0.0.1:.../callback?...) and paste it here:\n",
					acct.Email, u)
				if !*noBrowser {
					opened = a.openBrowser(ctx, u)
				}
			},
			Paste: a.stdin,
		})
	}
	if err != nil {
		return fmt.Errorf("accounts authorize %s: %w", acct.ID, err)
	}
	c, err := onboarding.Check(acct, app, g)
	if err != nil {
		return fmt.Errorf("accounts authorize %s: %w; nothing stored", acct.ID, err)
	}
	// The seam for the cluster store: another onboarding.GrantStore.
	var store onboarding.GrantStore = onboarding.FileStore{AccountsPath: snap.AccountsPath, ConfigPath: snap.ConfigPath}
	if err := store.SaveGrant(ctx, c); err != nil {
		return fmt.Errorf("accounts authorize %s: store the refresh token: %w", acct.ID, err)
	}
	fmt.Fprintf(a.stdout, "%s: consent given by %s; refresh token stored in %s\n", acct.ID, g.Email, snap.AccountsPath)
	a.reloadHint(snap.AccountsPath)
	return nil
}

// openBrowser starts the desktop's browser on u when there is a display;
// best effort, the printed address is what counts.
func (a *accountsCmd) openBrowser(ctx context.Context, u string) *exec.Cmd {
	name := "xdg-open"
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		return nil
	default:
		if a.getenv("DISPLAY") == "" && a.getenv("WAYLAND_DISPLAY") == "" {
			return nil
		}
	}
	cmd := exec.CommandContext(ctx, name, u)
	if cmd.Start() != nil {
		return nil
	}
	return cmd
}

func findAccount(snap *config.Snapshot, name string) *config.Account {
	for _, acct := range snap.Accounts {
		if acct.ID == name || oauthflow.SameAddress(acct.Email, name) {
			return acct
		}
	}
	return nil
}

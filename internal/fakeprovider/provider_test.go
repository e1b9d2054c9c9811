package fakeprovider_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

func TestProvider_waitMessages(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{DiscardBodies: true})
	tok := accessToken(t, p, "a@example.com")

	const senders, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan string, senders)
	for i := range senders {
		wg.Go(func() {
			conn, err := net.Dial("tcp", p.SMTPAddr())
			if err != nil {
				errs <- err.Error()
				return
			}
			c := newClient(t, conn)
			if _, _, err := c.readReply(); err != nil {
				errs <- err.Error()
				return
			}
			c.write("EHLO x\r\nAUTH XOAUTH2 " + xoauth2("a@example.com", tok) + "\r\n")
			c.readReply()
			if code, lines, _ := c.readReply(); code != 235 {
				errs <- "auth: " + strconv.Itoa(code) + " " + lines[0]
				return
			}
			for j := range each {
				c.write("MAIL FROM:<s" + strconv.Itoa(i) + "@example.com>\r\nRCPT TO:<r" + strconv.Itoa(j) + "@example.net>\r\nDATA\r\n")
				for range 3 {
					c.readReply()
				}
				c.write("body\r\n.\r\n")
				if code, lines, err := c.readReply(); code != 250 {
					errs <- "after dot: " + strconv.Itoa(code) + " " + lines[0] + " " + err.Error()
					return
				}
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitMessages(ctx, senders*each); err != nil {
		t.Fatalf("WaitMessages: %v", err)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	st := p.Stats()
	if st.Messages != senders*each || st.Recipients != senders*each || st.Logins != senders || st.MaxConcurrentSessionsPerUser < 1 {
		t.Errorf("stats %+v", st)
	}
	if m := p.Messages()[0]; m.Data != nil || m.Size != 6 {
		t.Errorf("message %+v", m)
	}
}

func TestProvider_waitMessagesEnds(t *testing.T) {
	t.Parallel()
	p := start(t, fakeprovider.Options{})
	if err := p.WaitMessages(context.Background(), 0); err != nil {
		t.Errorf("n=0: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.WaitMessages(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.WaitMessages(context.Background(), 1) }()
	p.Close()
	if err := <-done; !errors.Is(err, fakeprovider.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// Close must end sessions in every state: idle, waiting in a slow reply
// (or about to), in the middle of a body, and half-open token connections.
func TestProvider_closeStopsEverything(t *testing.T) {
	t.Parallel()
	p, err := fakeprovider.Start(fakeprovider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok := accessToken(t, p, "a@example.com")

	idle := dial(t, p)
	idle.ehlo()

	slow := dial(t, p)
	slow.login("a@example.com", tok)
	slow.do("MAIL FROM:<a@example.com>", 250, "")
	slow.do("RCPT TO:<slow-600000@x.test>", 250, "")
	slow.do("DATA", 354, "")
	slow.write("x\r\n.\r\n")

	body := dial(t, p)
	body.login("a@example.com", tok)
	body.do("MAIL FROM:<a@example.com>", 250, "")
	body.do("RCPT TO:<r@x.test>", 250, "")
	body.do("DATA", 354, "")
	body.write("half a line")

	tokenConn, err := net.Dial("tcp", p.TokenURL()[len("http://"):len(p.TokenURL())-len("/token")])
	if err != nil {
		t.Fatal(err)
	}
	defer tokenConn.Close()
	tokenConn.Write([]byte("POST /token HTTP/1.1\r\n"))

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range []*client{idle, slow, body} {
		c.expectClosed()
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", p.SMTPAddr()); err == nil {
		t.Error("SMTP still accepting after Close")
	}
}

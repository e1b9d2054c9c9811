package fakeprovider_test

import (
	"strings"
	"testing"
	"time"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/fakeprovider"
)

// BenchmarkDelivery pushes 4 KiB messages through one session with
// DiscardBodies, as the load benchmark does: one message per iteration.
func BenchmarkDelivery(b *testing.B) {
	p := start(b, fakeprovider.Options{DiscardBodies: true})
	tok := accessToken(b, p, "a@example.com")
	c := dial(b, p)
	c.login("a@example.com", tok)
	c.conn.SetDeadline(time.Time{}) // dial's safety deadline is for tests
	txn := []byte("MAIL FROM:<a@example.com>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n")
	data := []byte(strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n", 62) + ".\r\n")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c.conn.Write(txn)
		for range 3 {
			if code, _, err := c.readReply(); err != nil || code >= 400 {
				b.Fatal(code, err)
			}
		}
		c.conn.Write(data)
		if code, _, err := c.readReply(); err != nil || code != 250 {
			b.Fatal(code, err)
		}
	}
}

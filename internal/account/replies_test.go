package account

import (
	"fmt"
	"testing"
	"time"
)

func TestReplies_newestFirstAndBounded(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, RecentReplies - 1, RecentReplies, RecentReplies + 3, 3 * RecentReplies} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			var c Counters
			at := time.Unix(1_700_000_000, 0)
			for i := range n {
				c.SetLastReply(fmt.Sprint("250 ", i), at.Add(time.Duration(i)*time.Second))
			}
			got := c.Replies()
			if want := min(n, RecentReplies); len(got) != want {
				t.Fatalf("got %d replies, want %d", len(got), want)
			}
			for k, r := range got {
				if want := fmt.Sprint("250 ", n-1-k); r.Text != want {
					t.Errorf("reply %d = %q, want %q", k, r.Text, want)
				}
			}
			if lr, ok := c.LastReply(); n > 0 && (!ok || lr.Text != got[0].Text) {
				t.Errorf("LastReply %q, Replies[0] %q", lr.Text, got[0].Text)
			}
		})
	}
}

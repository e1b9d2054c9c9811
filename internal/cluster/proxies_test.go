package cluster_test

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/cluster"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
)

// TestProxies_listsTheLiveOnes: each proxy's heartbeat puts it in the
// list with the session slots it holds; a clean stop takes it out.
func TestProxies_listsTheLiveOnes(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	c := standalone(t, s.Addr)
	a := open(t, c, "a")
	b, err := cluster.Open(t.Context(), c, cluster.Options{Node: "b"})
	if err != nil {
		t.Fatal(err)
	}
	nodes := func() string {
		ps, err := a.Proxies(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var s string
		for _, p := range ps {
			if p.LastSeen.IsZero() {
				return "" // the info of its first heartbeat is not there yet
			}
			name, _, _ := strings.Cut(p.Node, "#") // Node adds a random suffix per start
			s += name + " "
		}
		return s
	}
	waitFor(t, "both proxies listed", func() bool { return nodes() == "a b " })
	b.Close()
	waitFor(t, "only a listed", func() bool { return nodes() == "a " })
}

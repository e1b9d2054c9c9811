package redistest_test

import (
	"strings"
	"testing"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/redistest"
)

func TestStart_answersAndRestartsEmpty(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	if _, err := redistest.Do(s.Addr, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if v, err := redistest.Do(s.Addr, "EXISTS", "k"); err != nil || v != "0" {
		t.Fatalf("after restart without persistence EXISTS k = %q, %v; want 0", v, err)
	}
}

func TestStart_appendOnlyKeepsData(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{AppendOnly: true})
	if _, err := redistest.Do(s.Addr, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if v, err := redistest.Do(s.Addr, "GET", "k"); err != nil || v != "v" {
		t.Fatalf("after restart with AOF GET k = %q, %v; want v", v, err)
	}
}

func TestStartCluster_threeMastersCoverAllSlots(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	info, err := redistest.Do(c.Nodes[0].Addr, "CLUSTER", "INFO")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster_slots_assigned:16384", "cluster_known_nodes:3"} {
		if !strings.Contains(info, want) {
			t.Errorf("CLUSTER INFO lacks %q:\n%s", want, info)
		}
	}
}

func TestStartSentinel_knowsTheMaster(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	got, err := s.MasterAddr()
	if err != nil || got != s.Master.Addr {
		t.Fatalf("sentinel master = %q, %v; want %s", got, err, s.Master.Addr)
	}
}

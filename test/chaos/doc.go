// Package chaos holds the cluster-mode chaos run (issue 12): three proxy
// processes sharing one redis-server in front of the fake provider, load
// through all three, Redis restarted empty and one proxy killed with
// SIGKILL mid-load. It asserts the cluster's promises: sessions per
// account never above the cap at any instant, messages accepted per
// account never above the budget, every 250 delivered exactly once.
//
// It is behind the chaos build tag (a few minutes): go test -tags chaos
// -run TestChaos ./test/chaos/ (.ci/run runs it).
package chaos

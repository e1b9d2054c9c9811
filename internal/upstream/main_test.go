package upstream_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: the fake
// servers, context watchers and TLS handshakes must all be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

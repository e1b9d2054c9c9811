package service_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every end-to-end test stops the proxy and the fake provider it started;
// no goroutine may outlive them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

package token_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every request goroutine has ended with its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

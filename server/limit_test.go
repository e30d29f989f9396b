package server

import (
	"fmt"
	"testing"
	"time"
)

// TestLimiterFairShare: busy addresses that exhaust the global budgets do
// not lock out a quiet address, and the hard cap still bounds the total.
func TestLimiterFairShare(t *testing.T) {
	l := newLimiter(100, 10, 64, 16)
	now := time.Unix(1000, 0)
	// 8 busy addresses fill the pending cap (8 x 16 = 128 > 64) and drain
	// the global bucket.
	admitted := 0
	for i := range 8 {
		for range 20 {
			if _, ok := l.admit(fmt.Sprintf("10.0.0.%d", i), now); ok {
				admitted++
			}
		}
	}
	// Each address's first socket is quiet and may pass the cap; every
	// later one is held to it.
	if l.pending != admitted || l.pending < 64 || l.pending > 64+8 {
		t.Fatalf("busy addresses hold %d pending, want the cap of 64 plus at most one quiet socket each", l.pending)
	}
	// A busy address is refused; a quiet one is still admitted.
	if _, ok := l.admit("10.0.0.1", now); ok {
		t.Fatal("a busy address got past the exhausted global budget")
	}
	release, ok := l.admit("192.0.2.1", now)
	if !ok {
		t.Fatal("a quiet address was locked out by busy ones")
	}
	// Right after, the same address is no longer quiet (it holds a socket).
	if _, ok := l.admit("192.0.2.1", now); ok {
		t.Fatal("an address holding a pending socket counted as quiet")
	}
	release()
	// Quiet addresses cannot push the total past twice the cap.
	for i := range 200 {
		l.admit(fmt.Sprintf("198.51.100.%d", i), now)
	}
	if l.pending != 2*64 {
		t.Fatalf("%d pending, want the hard cap %d", l.pending, 2*64)
	}
}

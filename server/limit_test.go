package server

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// The spec's defaults (section "Limits"): 100 handshakes per second with a
// burst of 200 in total, 10 per second with a burst of 20 per address, 1024
// pending sockets in total and 16 per address.
const (
	defRate, defBurst       = 100, 200
	defPerAddr, defPerBurst = 10, 20
	defPending, defPerAddrP = 1024, 16
)

// maxExcess is the smallest burst that explains the admissions at times ts
// (in order) under rate per second: the largest count in any interval less
// rate times its length. A limiter that admits at most rate per second plus
// a burst of b never shows more than b.
func maxExcess(ts []time.Time, rate float64) float64 {
	if len(ts) == 0 {
		return 0
	}
	t0 := ts[0]
	best, bestStart := 0.0, 0.0
	for j, t := range ts {
		x := t.Sub(t0).Seconds()
		// bestStart is the largest rate*t_i - i over i <= j (0 at i = 0).
		bestStart = max(bestStart, -float64(j)+rate*x)
		best = max(best, float64(j+1)-rate*x+bestStart)
	}
	return best
}

func TestMaxExcess(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	for _, tc := range []struct {
		ts   []time.Time
		want float64
	}{
		{nil, 0},
		{at(0, 0, 0), 3},
		{at(0, 1000, 2000), 1},          // one a second at rate 1
		{at(0, 0, 1000, 1000, 1000), 4}, // 5 in 1 s: 5 - 1
		{at(0, 5000, 5000, 5000), 3},    // the late three
	} {
		if got := maxExcess(tc.ts, 1); got != tc.want {
			t.Errorf("maxExcess(%v) = %v, want %v", tc.ts, got, tc.want)
		}
	}
}

// TestLimiterGlobalBoundManyAddresses: a flood from thousands of distinct
// IPv4 addresses, each seen for the first time, is held to the global
// bucket: at most its burst at one instant and the rate over time.
func TestLimiterGlobalBoundManyAddresses(t *testing.T) {
	l := testLimiter(defRate, defPerAddr, defPending, defPerAddrP)
	now := time.Unix(1000, 0)
	var admitted []time.Time
	for i := range 5000 {
		if release, ok := l.admit(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), now); ok {
			admitted = append(admitted, now)
			release()
		}
	}
	if len(admitted) > defBurst {
		t.Errorf("%d of 5000 first-seen addresses admitted at one instant, want at most the burst %d", len(admitted), defBurst)
	}
	// Then 50 fresh addresses every 10 ms for 10 s: 5000 a second against
	// a rate of 100.
	n := 5000
	for step := 1; step <= 1000; step++ {
		now = now.Add(10 * time.Millisecond)
		for range 50 {
			n++
			if release, ok := l.admit(fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255), now); ok {
				admitted = append(admitted, now)
				release()
			}
		}
	}
	if max := defBurst + defRate*10; len(admitted) > max {
		t.Errorf("%d admitted over 10 s, want at most burst + rate x 10 s = %d", len(admitted), max)
	}
	if x := maxExcess(admitted, defRate); x > defBurst+1e-6 {
		t.Errorf("admissions exceed the rate by %.0f in some interval, want at most the burst %d", x, defBurst)
	}
}

// TestLimiterIPv6Slash64: the addresses of one IPv6 /64 are one client for
// the per-address limits, so a flood from inside one /64 gets one
// address's budget.
func TestLimiterIPv6Slash64(t *testing.T) {
	l := testLimiter(defRate, defPerAddr, defPending, defPerAddrP)
	now := time.Unix(1000, 0)
	var admitted []time.Time
	n := 0
	next := func() string {
		n++
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, byte(n >> 24), byte(n >> 16), 0xab, 0xcd, byte(n >> 8), byte(n), 0, 1}).String()
	}
	for range 5000 {
		if release, ok := l.admit(next(), now); ok {
			admitted = append(admitted, now)
			release()
		}
	}
	if len(admitted) > defPerBurst {
		t.Errorf("%d of 5000 addresses of one /64 admitted at one instant, want at most the per-address burst %d", len(admitted), defPerBurst)
	}
	for step := 1; step <= 1000; step++ {
		now = now.Add(10 * time.Millisecond)
		for range 50 {
			if release, ok := l.admit(next(), now); ok {
				admitted = append(admitted, now)
				release()
			}
		}
	}
	if max := defPerBurst + defPerAddr*10; len(admitted) > max {
		t.Errorf("%d admitted from one /64 over 10 s, want at most its per-address burst + rate x 10 s = %d", len(admitted), max)
	}
	// Another /64 is another client.
	if _, ok := l.admit("2001:db8:1:3::1", now); !ok {
		t.Error("an address of another /64 was refused")
	}
}

// TestLimiterRefusedCreateNoState: a request the limiter refuses leaves
// nothing behind, whether the pending cap or the global rate refused it.
func TestLimiterRefusedCreateNoState(t *testing.T) {
	// The pending cap: quiet addresses fill it, then 1000 more are refused.
	l := testLimiter(1e6, 1e6, 64, 16)
	now := time.Unix(1000, 0)
	admitted := 0
	for i := range 200 {
		if _, ok := l.admit(fmt.Sprintf("10.0.0.%d", i), now); ok {
			admitted++
		}
	}
	if got := stateLen(l); got > admitted {
		t.Errorf("%d per-address entries after %d admissions out of 200 requests, want at most one per admission", got, admitted)
	}
	before := stateLen(l)
	for i := range 1000 {
		if _, ok := l.admit(fmt.Sprintf("10.1.%d.%d", i>>8, i&255), now); ok {
			t.Fatalf("request %d admitted past a full pending cap", i)
		}
	}
	if got := stateLen(l); got != before {
		t.Errorf("1000 requests refused at the pending cap took the per-address entries from %d to %d", before, got)
	}

	// The global rate: its burst is used up, then 1000 more arrive.
	l = testLimiter(defRate, defPerAddr, defPending, defPerAddrP)
	admitted = 0
	for i := range 1000 {
		if release, ok := l.admit(fmt.Sprintf("10.2.%d.%d", i>>8, i&255), now); ok {
			admitted++
			release()
		}
	}
	if got := stateLen(l); got > admitted {
		t.Errorf("%d per-address entries after %d admissions out of 1000 requests, want at most one per admission", got, admitted)
	}
	if admitted > defBurst {
		t.Errorf("%d of 1000 admitted in one instant, want at most the burst %d", admitted, defBurst)
	}
}

// TestLimiterStateCap: a flood of 1e5 distinct addresses keeps the
// per-address state under its cap.
func TestLimiterStateCap(t *testing.T) {
	l := testLimiter(defRate, defPerAddr, defPending, defPerAddrP)
	now := time.Unix(1000, 0)
	peak := 0
	for i := range 100_000 {
		if i%1000 == 0 {
			now = now.Add(100 * time.Millisecond)
		}
		if release, ok := l.admit(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), now); ok {
			release()
		}
		peak = max(peak, stateLen(l))
	}
	if peak > defaultMaxTrackedAddrs {
		t.Errorf("%d per-address entries at the peak of a flood of 1e5 addresses, want at most the cap %d", peak, defaultMaxTrackedAddrs)
	}
	// Entries are made only for admissions: 10 s of rate 100 plus a burst.
	if peak > defBurst+defRate*11 {
		t.Errorf("%d per-address entries at the peak, want at most what the global rate admits", peak)
	}
}

// TestLimiterFairShare: while 300 busy addresses flood (every one tries
// every 10 ms and holds what it gets for 5 s), quiet clients connecting now
// and then are admitted; and the total stays within the global bound and
// the pending cap.
//
// For the first second or so of the flood its addresses are new to the
// limiter, so they are quiet too and share the reserve with the
// legitimate clients (a refused request leaves no state that could tell
// them apart); from then on every quiet client is admitted.
func TestLimiterFairShare(t *testing.T) {
	l := testLimiter(defRate, defPerAddr, defPending, defPerAddrP)
	now := time.Unix(1000, 0)
	type held struct {
		until   time.Time
		release func()
	}
	var holds []held
	var admitted []time.Time
	const floodFrom, settled = 200, 400 // steps of 10 ms
	legit, legitOK, busyOK, early := 0, 0, 0, 0
	for step := range 2200 { // 22 s, 20 of them under the flood
		now = now.Add(10 * time.Millisecond)
		kept := holds[:0]
		for _, h := range holds {
			if now.Before(h.until) {
				kept = append(kept, h)
			} else {
				h.release()
			}
		}
		holds = kept
		for b := range 300 {
			if step < floodFrom {
				break
			}
			if release, ok := l.admit(fmt.Sprintf("10.6.%d.%d", b/250, 1+b%250), now); ok {
				busyOK++
				admitted = append(admitted, now)
				holds = append(holds, held{now.Add(5 * time.Second), release})
			}
		}
		// 50 legitimate handshakes a second, round robin over 250
		// addresses; each authenticates within the step.
		if step%2 == 0 {
			legit++
			if release, ok := l.admit(fmt.Sprintf("10.4.0.%d", 1+legit%250), now); ok {
				legitOK++
				admitted = append(admitted, now)
				holds = append(holds, held{now.Add(5 * time.Millisecond), release})
			} else if step < settled {
				early++
			} else {
				t.Errorf("a quiet client was refused %v into the flood", time.Duration(step-floodFrom)*10*time.Millisecond)
			}
		}
		if p := pendingOf(l); p > defPending {
			t.Fatalf("%d pending sockets at step %d, over the cap %d", p, step, defPending)
		}
	}
	for _, h := range holds {
		h.release()
	}
	t.Logf("quiet clients: %d of %d admitted (%d refused in the flood's first 2 s); busy: %d admitted", legitOK, legit, early, busyOK)
	if early > 60 {
		t.Errorf("%d quiet clients refused in the flood's first 2 s, want at most about one second's worth", early)
	}
	if busyOK == 0 {
		t.Error("the busy addresses got nothing: the reserve for quiet clients should be a share, not everything")
	}
	if x := maxExcess(admitted, defRate); x > defBurst+1e-6 {
		t.Errorf("admissions exceed the rate by %.0f in some interval, want at most the burst %d (busy %d, quiet %d)", x, defBurst, busyOK, legitOK)
	}
}

// TestLimiterPendingFairShare: busy addresses that fill the pending cap do
// not lock out a quiet address, and nothing takes the total past the cap.
func TestLimiterPendingFairShare(t *testing.T) {
	l := testLimiter(1e6, 1e6, 64, 16)
	now := time.Unix(1000, 0)
	// 8 busy addresses want 8 x 16 = 128 sockets, twice the cap.
	for i := range 8 {
		for range 20 {
			l.admit(fmt.Sprintf("10.0.0.%d", i), now)
		}
	}
	if p := pendingOf(l); p > 64 {
		t.Fatalf("busy addresses hold %d pending, over the cap of 64", p)
	}
	// A busy address is refused; a quiet one is still admitted.
	if _, ok := l.admit("10.0.0.1", now); ok {
		t.Fatal("a busy address got past the pending cap")
	}
	release, ok := l.admit("192.0.2.1", now)
	if !ok {
		t.Fatal("a quiet address was locked out by busy ones")
	}
	// Right after, the same address is no longer quiet (it holds a socket).
	if _, ok := l.admit("192.0.2.1", now); ok && pendingOf(l) > 64 {
		t.Fatal("an address holding a pending socket counted as quiet")
	}
	release()
	// Quiet addresses cannot push the total past the cap.
	for i := range 200 {
		l.admit(fmt.Sprintf("198.51.100.%d", i), now)
	}
	if p := pendingOf(l); p > 64 {
		t.Fatalf("%d pending, over the cap 64", p)
	}
}

func pendingOf(l *limiter) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending
}

// testLimiter is a limiter with the server's defaults for what it does not
// name (IPv6 /64, MaxTrackedAddrs).
func testLimiter(rate, perAddr float64, maxPending, maxPerAddr int) *limiter {
	return newLimiter(limiterConfig{rate: rate, perAddr: perAddr, maxPending: maxPending, maxPendingPer: maxPerAddr,
		maxAddrs: defaultMaxTrackedAddrs, v6Bits: 64})
}

func stateLen(l *limiter) int { return l.entries() }

// TestLimiterKey: IPv4 clients are counted by address, IPv4-mapped IPv6 as
// IPv4, IPv6 by the configured prefix (a /64 by default).
func TestLimiterKey(t *testing.T) {
	for _, tc := range []struct {
		bits     int
		ip, want string
	}{
		{64, "203.0.113.9", "203.0.113.9"},
		{64, "::ffff:203.0.113.9", "203.0.113.9"},
		{64, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{64, "2001:db8:1:2::1%eth0", "2001:db8:1:2::"},
		{48, "2001:db8:1:2:3:4:5:6", "2001:db8:1::"},
		{128, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"},
		{64, "::1", "::"},
		{64, "not an address", "invalid IP"},
		{64, "", "invalid IP"},
	} {
		l := newLimiter(limiterConfig{rate: 1, perAddr: 1, maxPending: 1, maxPendingPer: 1, maxAddrs: 1, v6Bits: tc.bits})
		if got := l.key(tc.ip).String(); got != tc.want {
			t.Errorf("key(%q) with /%d = %s, want %s", tc.ip, tc.bits, got, tc.want)
		}
	}
	// Different /64s are different clients; one /64 is one.
	l := testLimiter(1e6, 1, 1e6, 1e6)
	now := time.Unix(1000, 0)
	for _, ip := range []string{"2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff::3"} {
		l.admit(ip, now)
	}
	if _, ok := l.admit("2001:db8:0:2::1", now); !ok {
		t.Error("another /64 shares the first one's budget")
	}
	if got := stateLen(l); got != 2 {
		t.Errorf("%d entries for addresses in two /64s, want 2", got)
	}
}

// TestLimiterStateCapReached: when the limits would admit more clients
// than the table holds, new clients are refused rather than tracked, and
// room comes back when entries expire.
func TestLimiterStateCapReached(t *testing.T) {
	l := newLimiter(limiterConfig{rate: 1e9, perAddr: 1e9, maxPending: 1 << 30, maxPendingPer: 16, maxAddrs: 1000, v6Bits: 64})
	now := time.Unix(1000, 0)
	admitted := 0
	for i := range 100_000 {
		if i%1000 == 0 {
			now = now.Add(time.Millisecond)
		}
		if release, ok := l.admit(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), now); ok {
			admitted++
			release()
		}
		if n := stateLen(l); n > 1000 {
			t.Fatalf("%d entries after %d requests, over the cap 1000", n, i+1)
		}
	}
	if admitted != 1000 {
		t.Errorf("%d admitted with a table of 1000 that never expires within the flood, want 1000", admitted)
	}
	// Their buckets are full again at once (the rate is huge): the next
	// sweep, a second on, drops them.
	now = now.Add(time.Second)
	if _, ok := l.admit("192.0.2.1", now); !ok {
		t.Error("a new client refused after the sweep")
	}
	if n := stateLen(l); n != 1 {
		t.Errorf("%d entries after the sweep, want 1", n)
	}
}

// TestLimiterSweepKeepsPending: the sweep never drops a client that holds
// a pending socket, and drops one whose bucket is full and holds nothing.
func TestLimiterSweepKeepsPending(t *testing.T) {
	l := testLimiter(defRate, defPerAddr, defPending, defPerAddrP)
	now := time.Unix(1000, 0)
	release, _ := l.admit("192.0.2.1", now)
	r2, _ := l.admit("192.0.2.2", now)
	r2()
	now = now.Add(10 * time.Second)
	l.admit("192.0.2.3", now) // sweeps
	if _, ok := l.addrs[l.key("192.0.2.1")]; !ok {
		t.Error("the sweep dropped a client holding a pending socket")
	}
	if _, ok := l.addrs[l.key("192.0.2.2")]; ok {
		t.Error("the sweep kept an idle client with a full bucket")
	}
	release()
	if p := pendingOf(l); p != 1 {
		t.Errorf("%d pending after the release, want 1", p)
	}
}

// BenchmarkLimiterAdmit is the limiter's cost per request under a flood:
// refusals from a busy address, refusals from first-seen addresses, and
// admissions (with their release) at a rate the limits allow.
func BenchmarkLimiterAdmit(b *testing.B) {
	addrs := make([]string, 1<<16)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	b.Run("refused-busy", func(b *testing.B) {
		l := testLimiter(defRate, defPerAddr, defPending, defPerAddrP)
		now := time.Unix(1000, 0)
		for range 100 {
			l.admit("192.0.2.1", now)
		}
		for b.Loop() {
			l.admit("192.0.2.1", now)
		}
	})
	b.Run("refused-new", func(b *testing.B) {
		l := testLimiter(defRate, defPerAddr, defPending, defPerAddrP)
		now := time.Unix(1000, 0)
		for i := range 1000 {
			l.admit(addrs[i], now)
		}
		i := 0
		for b.Loop() {
			l.admit(addrs[i&(len(addrs)-1)], now)
			i++
		}
	})
	b.Run("admitted", func(b *testing.B) {
		l := testLimiter(1e12, 1e12, defPending, defPerAddrP)
		now := time.Unix(1000, 0)
		i := 0
		admitted := 0
		for b.Loop() {
			if release, ok := l.admit(addrs[i&(len(addrs)-1)], now); ok {
				admitted++
				release()
			}
			i++
			now = now.Add(time.Millisecond) // a sweep every 1000
		}
		if admitted < i*99/100 {
			b.Fatalf("%d of %d admitted", admitted, i)
		}
	})
}

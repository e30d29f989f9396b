package server

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// defaultMaxTrackedAddrs is Config.MaxTrackedAddrs's zero value.
const defaultMaxTrackedAddrs = 16384

// limiterConfig are the pre-authentication limits of spec section
// "Limits", with the defaults already filled in.
type limiterConfig struct {
	rate, perAddr             float64 // new upgrades per second, in total and per client
	maxPending, maxPendingPer int     // upgraded but unauthenticated sockets, in total and per client
	maxAddrs                  int     // per-client entries kept at once
	v6Bits                    int     // leading bits of an IPv6 address that name one client
}

// burstOf is the burst that goes with a rate: twice the rate, rounded up,
// and at least one.
func burstOf(r float64) int {
	return int(max(1, math.Ceil(2*r)))
}

// limiter applies the pre-authentication limits of spec section "Limits"
// to new upgrades, before the server signs anything, so that a refused
// request costs the server a map lookup, not a signature.
//
// # The bound
//
// Every admission takes one token from the global bucket (rate
// HandshakeRate, burst B = burstOf(HandshakeRate)), whoever asks. Over any
// interval of T seconds at most B + HandshakeRate*T upgrades are admitted,
// whatever the number of addresses they come from; with the defaults, 200
// at once and 100 a second after that. Likewise at most MaxPending sockets
// are pending at once. Per client (an IPv4 address, or an IPv6 prefix of
// v6Bits bits, by default a /64) a second bucket (HandshakeRatePerAddr,
// burst burstOf of it) and MaxPendingPerAddr apply on top.
//
// # Fair sharing
//
// Part of each global budget is a reserve that only quiet clients may use:
// a client that holds no pending socket and whose own bucket is full (it
// has not connected for a while, or never). Busy clients may take a global
// token only while more than reserve = B/2 tokens are left, and a pending
// slot only while fewer than MaxPending - MaxPending/4 are taken. A flood
// from a few hundred busy addresses therefore drains the global budgets
// down to the reserve and no further: quiet clients, which the refill
// serves first, keep connecting (the denial-of-service benchmark measures
// this), and they are still counted in the same total. An attacker who
// spreads over enough addresses to look quiet competes with legitimate
// clients for the reserve, but cannot take the server past the bound.
//
// A client is quiet only while it is not knocking: a refused attempt from a
// client that has an entry still takes a token from its own bucket (when
// there is one), so an address that keeps retrying while it holds sockets
// stays busy after they close, and cannot refill the reserve's share
// with its retries.
//
// # State
//
// A per-client entry is created only when a request is admitted, so a
// refused request leaves nothing behind; there are at most maxAddrs
// entries (a new client is refused while the table is full), and once a
// second the entries of clients that hold no pending socket and whose
// bucket is full again are dropped: such an entry decides nothing that a
// missing one would not. As entries are made only for admissions, the
// table holds in practice at most the clients with pending sockets plus
// those admitted in the last few seconds.
type limiter struct {
	cfg limiterConfig

	mu             sync.Mutex
	global         *rate.Limiter
	reserve        float64 // global tokens that only quiet clients may take
	pendingReserve int     // pending slots that only quiet clients may take
	perBurst       int
	addrs          map[netip.Addr]*addrState
	pending        int
	lastSweep      time.Time
}

// addrState is one client's entry: its bucket and pending sockets.
type addrState struct {
	bucket  *rate.Limiter
	pending int
}

func newLimiter(cfg limiterConfig) *limiter {
	b := burstOf(cfg.rate)
	return &limiter{
		cfg:            cfg,
		global:         rate.NewLimiter(rate.Limit(cfg.rate), b),
		reserve:        float64(b / 2),
		pendingReserve: cfg.maxPending / 4,
		perBurst:       burstOf(cfg.perAddr),
		addrs:          map[netip.Addr]*addrState{},
	}
}

// key is the client an address belongs to: an IPv4 address (IPv4-mapped
// IPv6 included) by itself, an IPv6 address by its first v6Bits bits. An
// address that does not parse counts as one client with every other such.
func (l *limiter) key(ip string) netip.Addr {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}
	}
	a = a.WithZone("").Unmap()
	if a.Is6() {
		if p, err := a.Prefix(l.cfg.v6Bits); err == nil {
			return p.Addr()
		}
	}
	return a
}

// admit reserves a pending slot for a new socket from ip, taking a token
// from the global bucket and from ip's own. The caller must call release
// exactly once when the socket authenticates or closes.
func (l *limiter) admit(ip string, now time.Time) (release func(), ok bool) {
	k := l.key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	a := l.addrs[k]
	if a == nil && len(l.addrs) >= l.cfg.maxAddrs {
		return nil, false
	}
	// A client without an entry is quiet: its bucket would be full and it
	// holds nothing.
	quiet := a == nil || a.pending == 0 && a.bucket.TokensAt(now) >= float64(l.perBurst)
	pendingCap, floor := l.cfg.maxPending, 0.0
	if !quiet {
		pendingCap, floor = l.cfg.maxPending-l.pendingReserve, l.reserve
	}
	if a != nil && (a.pending >= l.cfg.maxPendingPer || a.bucket.TokensAt(now) < 1) ||
		l.pending >= pendingCap || l.global.TokensAt(now) < floor+1 {
		if a != nil {
			// A known client's refused attempt still spends its own
			// budget, so that one that keeps knocking does not look quiet
			// the moment its sockets close. An unknown one's leaves no
			// trace.
			a.bucket.AllowN(now, 1)
		}
		return nil, false
	}
	// Admitted: every check has passed, so both takes succeed.
	l.global.AllowN(now, 1)
	if a == nil {
		a = &addrState{bucket: rate.NewLimiter(rate.Limit(l.cfg.perAddr), l.perBurst)}
		l.addrs[k] = a
	}
	a.bucket.AllowN(now, 1)
	l.pending++
	a.pending++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.pending--
			a.pending--
			l.mu.Unlock()
		})
	}, true
}

// sweep drops, at most once a second, the entries of clients that hold no
// pending socket and whose bucket is full again.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second && !now.Before(l.lastSweep) {
		return
	}
	l.lastSweep = now
	for k, a := range l.addrs {
		if a.pending == 0 && a.bucket.TokensAt(now) >= float64(l.perBurst) {
			delete(l.addrs, k)
		}
	}
}

// entries is the number of per-client entries.
func (l *limiter) entries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.addrs)
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/wsproof/wsproof/internal/pgtest"
	"github.com/wsproof/wsproof/keys"
)

// Compile-time checks of the interfaces the server uses.
var (
	_ keys.Registry = (*Registry)(nil)
	_ keys.Checker  = (*Registry)(nil)
)

// waitChange waits for an OnChange call after which cond holds, and
// returns how long after since that call was made.
func waitChange(t *testing.T, rr *running, since time.Time, what string, cond func() bool) time.Duration {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case at := <-rr.changes:
			if cond() {
				return at.Sub(since)
			}
		case <-timeout:
			t.Fatalf("%s: no OnChange within 5s after which it holds", what)
		}
	}
}

// TestPropagation measures the time from an Admin call to the change being
// visible in a running registry and announced by OnChange; the spec allows
// one second from commit to closing the affected sockets.
func TestPropagation(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)
	if err := a.Add(ctx, mustEntry(t, "before-open"), "t"); err != nil {
		t.Fatal(err)
	}
	rr := start(t, url, Config{})
	if _, ok := rr.Lookup("before-open"); !ok {
		t.Fatal("Open did not load the existing key")
	}
	if err := rr.Check(); err != nil {
		t.Fatalf("Check after Open: %v", err)
	}

	var times []time.Duration
	for i := range 10 {
		kid := fmt.Sprintf("k%d", i)
		t0 := time.Now()
		if err := a.Add(ctx, mustEntry(t, kid), "t"); err != nil {
			t.Fatal(err)
		}
		times = append(times, waitChange(t, rr, t0, "add "+kid, func() bool {
			_, ok := rr.Lookup(kid)
			return ok
		}))
		t0 = time.Now()
		if err := a.Revoke(ctx, kid, "t"); err != nil {
			t.Fatal(err)
		}
		times = append(times, waitChange(t, rr, t0, "revoke "+kid, func() bool {
			e, ok := rr.Lookup(kid)
			return ok && e.Revoked
		}))
	}
	slices.Sort(times)
	median, worst := times[len(times)/2], times[len(times)-1]
	t.Logf("propagation from Admin call to OnChange over %d changes: median %v, max %v", len(times), median, worst)
	if worst >= time.Second {
		t.Errorf("propagation took %v, want well under 1s", worst)
	}

	// Raw SQL is seen too: a delete, and a rename, which announces both
	// key ids (the renamed row no longer matches its entry, so it is
	// refused).
	t0 := time.Now()
	sql(t, url, "DELETE FROM wsproof_keys WHERE kid = 'k0'")
	d := waitChange(t, rr, t0, "raw delete", func() bool { _, ok := rr.Lookup("k0"); return !ok })
	t.Logf("raw SQL delete: %v", d)
	sql(t, url, "UPDATE wsproof_keys SET kid = 'k1-renamed' WHERE kid = 'k1'")
	waitChange(t, rr, t0, "raw rename", func() bool {
		_, old := rr.Lookup("k1")
		_, renamed := rr.Lookup("k1-renamed")
		return !old && !renamed
	})

	// A big import arrives in batches, not one query and one OnChange per key.
	rr.drain()
	const n = 500
	batch := make([]*keys.Entry, n)
	for i := range batch {
		batch[i] = mustEntry(t, fmt.Sprintf("bulk-%03d", i))
	}
	t0 = time.Now()
	if _, err := a.Import(ctx, batch, "t"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	t0 = time.Now()
	d = waitChange(t, rr, t0, "import", func() bool {
		for _, e := range batch {
			if _, ok := rr.Lookup(e.KeyID); !ok {
				return false
			}
		}
		return true
	})
	calls := 1 + rr.drain()
	t.Logf("import of %d keys: took %v, all visible %v after it returned, in %d OnChange calls", n, took, d, calls)
	if d >= time.Second {
		t.Errorf("import propagation took %v, want under 1s", d)
	}
	if calls > n/10 {
		t.Errorf("%d OnChange calls for one import of %d keys: notifications are not batched", calls, n)
	}
	if st := rr.Status(); st.Keys != 1+8+n || !st.Connected || st.LastError != "" {
		t.Errorf("Status = %+v, want %d keys, connected, no error", st, 1+8+n)
	}
}

// TestBadRows: rows that do not load, or whose columns disagree with their
// entry, are absent for the server (fail closed), logged and counted once.
func TestBadRows(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)
	reg := prometheus.NewRegistry()
	rr := start(t, url, Config{Metrics: reg, ResyncInterval: 200 * time.Millisecond})
	bad := func() int { return int(metricValue(rr.m.bad)) }

	sql(t, url, `INSERT INTO wsproof_keys (kid, entry, thumbprint, subject, revoked) VALUES ('garbage', '{"kty":"OKP","crv":"Ed25519"}', 'x', 's', false)`)
	waitFor(t, time.Second, "garbage row counted", func() bool { return bad() == 1 })
	if _, ok := rr.Lookup("garbage"); ok {
		t.Error("a row that does not load is served")
	}

	// Revoking by hand through the column only: the row is inconsistent,
	// so the key is refused rather than kept usable.
	if err := a.Add(ctx, mustEntry(t, "good"), "t"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "good key visible", func() bool { _, ok := rr.Lookup("good"); return ok })
	rr.drain()
	t0 := time.Now()
	sql(t, url, "UPDATE wsproof_keys SET revoked = true WHERE kid = 'good'")
	waitChange(t, rr, t0, "column-only revocation", func() bool { _, ok := rr.Lookup("good"); return !ok })
	if bad() != 2 {
		t.Errorf("bad entries = %d, want 2", bad())
	}
	sql(t, url, "UPDATE wsproof_keys SET revoked = false WHERE kid = 'good'")
	waitChange(t, rr, t0, "row consistent again", func() bool { _, ok := rr.Lookup("good"); return ok })

	// A row filed under a key id other than its entry's.
	real := mustEntry(t, "real")
	entry := marshal(t, real)
	sql(t, url, "INSERT INTO wsproof_keys (kid, entry, thumbprint, subject, revoked) VALUES ('alias', $1, $2, $3, false)",
		string(entry), real.Thumbprint, real.Subject)
	waitFor(t, time.Second, "alias row counted", func() bool { return bad() == 3 })
	if _, ok := rr.Lookup("alias"); ok {
		t.Error("a row whose kid column disagrees with its entry is served under the column's kid")
	}
	if _, ok := rr.Lookup("real"); ok {
		t.Error("a row whose kid column disagrees with its entry is served under the entry's kid")
	}

	// Full reloads (every 200ms here) neither count nor log them again.
	time.Sleep(700 * time.Millisecond)
	if bad() != 3 {
		t.Errorf("bad entries = %d after reloads, want still 3", bad())
	}

	names := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{
		"wsproof_registry_db_up", "wsproof_registry_db_last_contact_timestamp_seconds",
		"wsproof_registry_db_reconnects_total", "wsproof_registry_db_notifications_total",
		"wsproof_registry_db_bad_entries_total", "wsproof_registry_keys",
	} {
		if !names[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
	if v := metricValue(rr.m.up); v != 1 {
		t.Errorf("up = %v, want 1", v)
	}
	if v := metricValue(rr.m.notifications); v < 5 {
		t.Errorf("notifications = %v, want at least 5", v)
	}
}

// TestLifecycle: Run returns promptly when its context ends and leaves no
// goroutine behind; Run and Close misuse is refused; without Run, Check
// fails Grace after the last contact.
func TestLifecycle(t *testing.T) {
	// Not parallel: goleak must not see other tests' goroutines.
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)
	if err := a.Add(ctx, mustEntry(t, "k"), "t"); err != nil {
		t.Fatal(err)
	}
	a.Close(ctx)
	ignore := goleak.IgnoreCurrent()

	r, err := Open(ctx, &Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	waitFor(t, 5*time.Second, "Run connected", func() bool { return r.Status().Connected })
	if err := r.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v; want refused", err)
	}
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		t.Logf("Run returned %v after cancel", time.Since(t0))
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of cancel")
	}
	if r.Status().Connected {
		t.Error("Status connected after Run returned")
	}
	if _, ok := r.Lookup("k"); !ok {
		t.Error("the cache is gone after Run returned")
	}
	r.Close()
	if err := r.Run(ctx); err == nil {
		t.Error("Run after Close succeeded")
	}

	// Open then Close, without Run; the grace clock, driven by Time.
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	r, err = Open(ctx, &Config{URL: url, Grace: time.Minute, Time: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	now.Add(int64(59 * time.Second))
	if err := r.Check(); err != nil {
		t.Errorf("Check within Grace: %v", err)
	}
	now.Add(int64(time.Second))
	if err := r.Check(); !errors.Is(err, keys.ErrUnavailable) {
		t.Errorf("Check after Grace: %v; want keys.ErrUnavailable", err)
	}
	goleak.VerifyNone(t, ignore)
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "URL is required"},
		{"negative Grace", Config{URL: "postgres://h/db", Grace: -1}, "Grace is negative"},
		{"Grace too short", Config{URL: "postgres://h/db", Grace: 3 * time.Second, PingInterval: 2 * time.Second, PingTimeout: time.Second}, "must exceed"},
		{"bad URL", Config{URL: "postgres://u:s3cr3t-pw@h:notaport/db"}, "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(ctx, &tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v; want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	if _, err := Connect(ctx, "postgres://u:s3cr3t-pw@h:notaport/db"); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("Connect with a bad URL: %v", err)
	}
}

// BenchmarkLookup looks keys up in a cache of 100,000 from all CPUs.
func BenchmarkLookup(b *testing.B) {
	r, err := newRegistry(&Config{URL: "postgres://localhost/db"})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	e, _ := newEntry(b, "k", "s")
	kids := make([]string, n)
	for i := range kids {
		kids[i] = fmt.Sprintf("key-%06d", i)
		r.entries[kids[i]] = &item{entry: e}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := r.Lookup(kids[i%n]); !ok {
				b.Fatal("missing")
			}
			i++
		}
	})
}

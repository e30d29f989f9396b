package postgres

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wsproof/wsproof/internal/pgtest"
	"github.com/wsproof/wsproof/keys"
)

// Short timings for outage tests: loss is detected within 0.5s of a silent
// partition, and the registry gives up 1.5s after its last contact.
var outageConfig = Config{Grace: 1500 * time.Millisecond, PingInterval: 200 * time.Millisecond, PingTimeout: 300 * time.Millisecond}

// waitUnavailable waits for the OnChange call that reports Check failing,
// and checks it came on time: Grace after the last contact.
func waitUnavailable(t *testing.T, rr *running) {
	t.Helper()
	timeout := time.After(outageConfig.Grace + 3*time.Second)
	for {
		select {
		case at := <-rr.changes:
			err := rr.Check()
			if err == nil {
				continue
			}
			if !errors.Is(err, keys.ErrUnavailable) {
				t.Fatalf("Check: %v; want keys.ErrUnavailable", err)
			}
			late := at.Sub(rr.Status().LastContact) - outageConfig.Grace
			t.Logf("OnChange reported the registry unavailable %v after the grace period ended", late)
			if late < 0 || late > 300*time.Millisecond {
				t.Errorf("OnChange came %v after the end of the grace period, want 0 to 300ms", late)
			}
			return
		case <-timeout:
			t.Fatalf("no OnChange reporting the registry unavailable; Check = %v", rr.Check())
		}
	}
}

// checkGrace checks, until shortly before the grace period ends, that the
// registry still vouches for kid.
func checkGrace(t *testing.T, rr *running, kid string) {
	t.Helper()
	end := rr.Status().LastContact.Add(outageConfig.Grace - 100*time.Millisecond)
	for time.Now().Before(end) {
		if err := rr.Check(); err != nil {
			t.Fatalf("Check failed within the grace period: %v", err)
		}
		if _, ok := rr.Lookup(kid); !ok {
			t.Fatalf("%s not served within the grace period", kid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutage: the database goes down and comes back.
func TestOutage(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)
	if err := a.Add(ctx, mustEntry(t, "k1"), "t"); err != nil {
		t.Fatal(err)
	}
	a.Close(ctx)
	// Trust authentication ignores the password; it is there to prove it
	// never shows.
	const pw = "hunter2-secret"
	rr := start(t, strings.Replace(url, "postgres@", "postgres:"+pw+"@", 1), outageConfig)

	t0 := time.Now()
	c.Stop(t)
	waitFor(t, time.Second, "loss noticed", func() bool { return !rr.Status().Connected })
	t.Logf("database stopped: loss noticed after %v", time.Since(t0))
	if v := metricValue(rr.m.up); v != 0 {
		t.Errorf("up = %v during the outage", v)
	}
	checkGrace(t, rr, "k1")
	waitUnavailable(t, rr)
	st := rr.Status()
	if st.LastError == "" || strings.Contains(st.LastError, pw) {
		t.Errorf("Status.LastError = %q; want the error, without the password", st.LastError)
	}

	rr.drain()
	t0 = time.Now()
	c.Restart(t)
	waitChange(t, rr, t0, "reconnection", func() bool { return rr.Check() == nil })
	t.Logf("database restarted: registry available again after %v", time.Since(t0))
	if st := rr.Status(); !st.Connected || st.Keys != 1 {
		t.Errorf("after reconnection: %+v", st)
	}
	if v := metricValue(rr.m.reconnects); v != 1 {
		t.Errorf("reconnects = %v, want 1", v)
	}
	// The new connection listens.
	a = connect(t, url)
	t0 = time.Now()
	if err := a.Revoke(ctx, "k1", "t"); err != nil {
		t.Fatal(err)
	}
	d := waitChange(t, rr, t0, "revocation after reconnection", func() bool { e, ok := rr.Lookup("k1"); return ok && e.Revoked })
	t.Logf("revocation after reconnection: %v", d)
}

// TestListenerCutOff: changes made while the registry's connection is gone
// are picked up by the full reload that follows reconnection.
func TestListenerCutOff(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)
	for _, kid := range []string{"k1", "k2"} {
		if err := a.Add(ctx, mustEntry(t, kid), "t"); err != nil {
			t.Fatal(err)
		}
	}
	rr := start(t, url+"&application_name=wsproof-listener", outageConfig)
	db, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	dbName := pgx.Identifier{db.Config.Database}.Sanitize()

	// Keep the registry from reconnecting until the changes are made, so
	// that they are certainly made while nobody listens. (A database's
	// connections are switched from another database.)
	maint := strings.Replace(url, "/"+db.Config.Database+"?", "/postgres?", 1)
	if maint == url {
		t.Fatalf("cannot derive the maintenance database's URL from %s", url)
	}
	sql(t, maint, "ALTER DATABASE "+dbName+" WITH ALLOW_CONNECTIONS false")
	// The function in the select list, not in WHERE: the planner may
	// evaluate WHERE conditions in any order, and kill everyone.
	rows, err := a.conn.Query(ctx, `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
		WHERE application_name = 'wsproof-listener'`)
	if err != nil {
		t.Fatal(err)
	}
	killed, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil || len(killed) != 1 || !killed[0] {
		t.Fatalf("terminated %v listener backends (%v), want one", killed, err)
	}
	waitFor(t, time.Second, "loss noticed", func() bool { return !rr.Status().Connected })
	// While cut off: a revocation, a raw delete, and an addition.
	if err := a.Revoke(ctx, "k1", "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.conn.Exec(ctx, "DELETE FROM wsproof_keys WHERE kid = 'k2'"); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(ctx, mustEntry(t, "k3"), "t"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if e, ok := rr.Lookup("k1"); !ok || e.Revoked || rr.Status().Connected {
		t.Fatal("the registry saw the change although it was cut off: the test proves nothing")
	}

	rr.drain()
	t0 := time.Now()
	sql(t, maint, "ALTER DATABASE "+dbName+" WITH ALLOW_CONNECTIONS true")
	d := waitChange(t, rr, t0, "changes made while cut off", func() bool {
		k1, ok1 := rr.Lookup("k1")
		_, ok2 := rr.Lookup("k2")
		_, ok3 := rr.Lookup("k3")
		return ok1 && k1.Revoked && !ok2 && ok3
	})
	t.Logf("changes made while cut off: seen %v after connections were allowed again", d)
	if err := rr.Check(); err != nil || !rr.Status().Connected {
		t.Errorf("after reconnection: Check %v, status %+v", err, rr.Status())
	}
}

// TestSilentPartition: the network drops everything without closing the
// connection; pings notice.
func TestSilentPartition(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t)
	ctx := testCtx(t)
	url, a := migrated(t, c)
	if err := a.Add(ctx, mustEntry(t, "k1"), "t"); err != nil {
		t.Fatal(err)
	}
	p, purl := proxied(t, url)
	rr := start(t, purl, outageConfig)

	t0 := time.Now()
	p.freeze()
	d := waitFor(t, 2*time.Second, "partition noticed", func() bool { return !rr.Status().Connected })
	t.Logf("silent partition noticed after %v (PingInterval %v, PingTimeout %v)", d, outageConfig.PingInterval, outageConfig.PingTimeout)
	if limit := outageConfig.PingInterval + outageConfig.PingTimeout + 200*time.Millisecond; d > limit {
		t.Errorf("partition noticed after %v, want within %v", d, limit)
	}
	if time.Since(t0) < outageConfig.Grace-200*time.Millisecond {
		checkGrace(t, rr, "k1")
	}
	waitUnavailable(t, rr)

	// Meanwhile the database works: a revocation made now must reach the
	// registry after the partition.
	if err := a.Revoke(ctx, "k1", "t"); err != nil {
		t.Fatal(err)
	}
	rr.drain()
	t0 = time.Now()
	p.thaw()
	waitChange(t, rr, t0, "partition healed", func() bool {
		e, ok := rr.Lookup("k1")
		return rr.Check() == nil && ok && e.Revoked
	})
	t.Logf("partition healed: available again, with the revocation, after %v", time.Since(t0))
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsproof/wsproof/keys"
)

// Defaults of the Config fields.
const (
	DefaultGrace          = 5 * time.Minute
	DefaultPingInterval   = 2 * time.Second
	DefaultPingTimeout    = 5 * time.Second
	DefaultResyncInterval = 5 * time.Minute
)

const (
	// queryTimeout bounds connecting, a full reload and a batch fetch, so
	// that a database that stops answering mid-query counts as lost. Run
	// shortens it to the end of the grace period, so that it can report
	// the registry unavailable on time.
	queryTimeout = 30 * time.Second

	// Reconnection backoff: doubling, with jitter, between these bounds.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second

	// drainWindow is how long Run waits for more notifications before it
	// fetches a batch: the notifications of one transaction arrive
	// together, so a short window turns an import of many keys into a few
	// queries without delaying a single revocation noticeably.
	drainWindow = 2 * time.Millisecond
	maxBatch    = 1000

	// channel is the LISTEN/NOTIFY channel the schema's trigger announces
	// changed key ids on.
	channel = "wsproof_keys"
)

// Config configures a Registry. Only URL is required.
type Config struct {
	// URL is the database, as a postgres:// URL or a libpq key=value
	// string, passed to pgx; required. Connect directly or through a
	// session-pooling proxy: LISTEN does not work through transaction
	// pooling. If it sets no application_name, "wsproof" is used.
	URL string

	// Grace is how long the registry keeps serving the keys it knows after
	// its last contact with the database; zero means DefaultGrace. After
	// it, Check fails and every key is refused until the database is back.
	// A node cut off from the database misses revocations for up to Grace:
	// it trades the one second of spec section "Revocation" for
	// availability during short outages. It must exceed PingInterval plus
	// PingTimeout.
	Grace time.Duration

	// OnChange is called on Run's goroutine, after the keys in the cache
	// changed (added, updated or removed: once per batch of changes) or
	// after Check's answer changed. The server calls its Recheck from it.
	// Run waits for it to return. Nil means none.
	OnChange func()

	// Logger receives connection losses, reconnections and refused rows
	// (by key id, never key material). Nil means slog.Default().
	Logger *slog.Logger

	// Metrics, if not nil, receives the registry's collectors, named
	// wsproof_registry_db_* and wsproof_registry_keys.
	Metrics prometheus.Registerer

	// Time is the clock of the grace period and of Status; nil means
	// time.Now.
	Time func() time.Time

	// PingInterval is how long Run waits for a notification before it pings
	// the database, to notice a connection that died silently; zero means
	// DefaultPingInterval.
	PingInterval time.Duration

	// PingTimeout is how long a ping may take before Run treats the
	// connection as lost and reconnects; zero means DefaultPingTimeout.
	PingTimeout time.Duration

	// ResyncInterval is how often Run reloads every key, a safety net for
	// changes whose notification was lost (triggers disabled by hand, for
	// example); zero means DefaultResyncInterval.
	ResyncInterval time.Duration
}

// Registry is a keys.Registry and keys.Checker backed by the wsproof_keys
// table: an in-memory cache that Run keeps in step with the database. See
// the package documentation for the design and the outage behaviour.
//
// Lookup, Check and Status are safe for concurrent use and never block on
// I/O.
type Registry struct {
	cfg     Config
	connCfg *pgx.ConnConfig
	log     *slog.Logger
	m       *metrics

	// entries is the cache. Only Open and then Run write it, one entry at
	// a time for notifications, so that a change costs O(1) however large
	// the registry; a full reload swaps in a new map.
	mu      sync.RWMutex
	entries map[string]*item

	lastContact atomic.Int64 // cfg.Time() in Unix nanoseconds; zero before Open succeeds
	connected   atomic.Bool

	errMu   sync.Mutex
	lastErr string

	connMu  sync.Mutex
	conn    *pgx.Conn // Open's connection, until Run takes it over
	running bool
	closed  bool

	// Owned by Run's goroutine (by Open before it).
	bad        map[string]row // refused rows, so that each is logged and counted once
	reportedOK bool           // the Check answer OnChange last reported

	// Reconnection backoff bounds: minBackoff and maxBackoff, shortened by
	// tests that cut the database off many times in a row.
	minBackoff, maxBackoff time.Duration

	// beforeApply, if set (by tests only), runs on Run's goroutine in
	// reload and fetch between reading rows and applying them: the window
	// in which the cache is older than what was just read.
	beforeApply func()
}

// item is a cached entry with the row it was read from.
type item struct {
	row   row
	entry *keys.Entry
}

// Status is a snapshot of a Registry for health endpoints.
type Status struct {
	Connected   bool      // Run holds a working connection to the database
	LastContact time.Time // of the last successful exchange with the database
	Keys        int       // entries in the cache, revoked ones included
	LastError   string    // the last connection or query error, or ""; never holds the password
}

// Open connects to the database, checks that its schema is the one this
// package needs (failing with an error wrapping ErrSchemaVersion if not),
// starts listening for changes and loads every key. It starts no goroutine:
// call Run to keep the registry fresh, or Close to release the connection.
// Without Run, Check fails Grace after Open.
func Open(ctx context.Context, cfg *Config) (*Registry, error) {
	r, err := newRegistry(cfg)
	if err != nil {
		return nil, err
	}
	conn, _, err := r.connect(ctx)
	if errors.Is(err, ErrSchemaVersion) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := r.m.register(r.cfg.Metrics); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("postgres: metrics: %w", err)
	}
	r.conn = conn
	r.reportedOK = true
	return r, nil
}

func newRegistry(cfg *Config) (*Registry, error) {
	c := *cfg
	if c.URL == "" {
		return nil, errors.New("postgres: Config.URL is required")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Grace", &c.Grace, DefaultGrace},
		{"PingInterval", &c.PingInterval, DefaultPingInterval},
		{"PingTimeout", &c.PingTimeout, DefaultPingTimeout},
		{"ResyncInterval", &c.ResyncInterval, DefaultResyncInterval},
	} {
		switch {
		case *d.v < 0:
			return nil, fmt.Errorf("postgres: Config.%s is negative", d.name)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	// While connected, contact is renewed at least every PingInterval plus
	// PingTimeout; a shorter Grace would make Check flap.
	if c.Grace <= c.PingInterval+c.PingTimeout {
		return nil, fmt.Errorf("postgres: Config.Grace (%v) must exceed PingInterval plus PingTimeout (%v)", c.Grace, c.PingInterval+c.PingTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Time == nil {
		c.Time = time.Now
	}
	connCfg, err := parseURL(c.URL)
	if err != nil {
		return nil, err
	}
	r := &Registry{cfg: c, connCfg: connCfg, log: c.Logger, entries: map[string]*item{}, bad: map[string]row{},
		minBackoff: minBackoff, maxBackoff: maxBackoff}
	r.m = newMetrics(r)
	return r, nil
}

// parseURL parses a connection string without ever echoing it: it may hold
// a password.
func parseURL(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, errors.New("postgres: the database URL does not parse (it is not shown: it may hold a password)")
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "wsproof"
	}
	return cfg, nil
}

// Lookup implements keys.Registry from the cache, without I/O.
func (r *Registry) Lookup(kid string) (*keys.Entry, bool) {
	r.mu.RLock()
	it, ok := r.entries[kid]
	r.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return it.entry, true
}

// Check implements keys.Checker: it returns nil within Grace of the last
// contact with the database, and after that an error wrapping
// keys.ErrUnavailable. While Run is connected, contact is renewed at least
// every PingInterval plus PingTimeout.
func (r *Registry) Check() error {
	last := r.lastContact.Load()
	if r.cfg.Time().UnixNano()-last < int64(r.cfg.Grace) {
		return nil
	}
	return fmt.Errorf("postgres: no contact with the database since %s: %w",
		time.Unix(0, last).UTC().Format(time.RFC3339), keys.ErrUnavailable)
}

// Status returns a snapshot of the registry's state.
func (r *Registry) Status() Status {
	r.mu.RLock()
	n := len(r.entries)
	r.mu.RUnlock()
	r.errMu.Lock()
	lastErr := r.lastErr
	r.errMu.Unlock()
	return Status{Connected: r.connected.Load(), LastContact: time.Unix(0, r.lastContact.Load()), Keys: n, LastError: lastErr}
}

// Close releases the connection Open made, if Run has not taken it over;
// Run closes its connections itself when its context is done, so Close is
// for a Registry whose Run never started. After Close, Run fails. The cache
// stays readable.
func (r *Registry) Close() {
	r.connMu.Lock()
	conn := r.conn
	r.conn, r.closed = nil, true
	r.connMu.Unlock()
	if conn != nil {
		closeConn(conn)
	}
}

// Run keeps the cache in step with the database until ctx is done, then
// closes its connection and returns ctx.Err(). It reconnects by itself
// after losing the database, with backoff; see the package documentation.
// Call it once, on a goroutine of the caller's; OnChange runs on it.
func (r *Registry) Run(ctx context.Context) error {
	r.connMu.Lock()
	switch {
	case r.closed:
		r.connMu.Unlock()
		return errors.New("postgres: Run after Close")
	case r.running:
		r.connMu.Unlock()
		return errors.New("postgres: Run is already running")
	}
	conn := r.conn
	r.conn, r.running = nil, true
	r.connMu.Unlock()
	if conn != nil {
		r.connected.Store(true)
		r.m.up.Set(1)
	}
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
		r.connected.Store(false)
		r.m.up.Set(0)
		r.connMu.Lock()
		r.running = false
		r.connMu.Unlock()
	}()

	backoff := r.minBackoff
	var lostAt time.Time
	connectedAt := time.Now()
	for {
		if conn == nil {
			c, changed, err := r.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.setErr(err)
				if lostAt.IsZero() { // Run started without Open's connection
					lostAt = time.Now()
					r.log.Warn("postgres: cannot reach the key database", "err", r.redact(err))
				} else {
					r.log.Debug("postgres: reconnection failed", "err", r.redact(err))
				}
				if err := r.sleep(ctx, jitter(backoff)); err != nil {
					return err
				}
				backoff = min(2*backoff, r.maxBackoff)
				continue
			}
			conn, connectedAt = c, time.Now()
			r.connected.Store(true)
			r.m.up.Set(1)
			if !lostAt.IsZero() {
				r.m.reconnects.Inc()
				r.log.Info("postgres: reconnected to the key database", "down", time.Since(lostAt).Round(time.Millisecond), "keys", r.Status().Keys)
				lostAt = time.Time{}
			}
			r.signal(changed)
		}

		err := r.serve(ctx, conn)
		closeConn(conn)
		conn = nil
		r.connected.Store(false)
		r.m.up.Set(0)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.setErr(err)
		lostAt = time.Now()
		r.log.Warn("postgres: lost contact with the key database; serving cached keys during the grace period",
			"err", r.redact(err), "grace", r.cfg.Grace)
		r.signal(false)
		// A connection that lasted resets the backoff; one that keeps
		// dropping right after connecting does not.
		if time.Since(connectedAt) >= r.maxBackoff {
			backoff = r.minBackoff
		}
		if err := r.sleep(ctx, jitter(backoff)); err != nil {
			return err
		}
		backoff = min(2*backoff, r.maxBackoff)
	}
}

// serve waits for notifications on conn and applies them, pings when idle,
// and reloads everything every ResyncInterval. It returns when the
// connection fails or ctx is done.
func (r *Registry) serve(ctx context.Context, conn *pgx.Conn) error {
	nextResync := time.Now().Add(r.cfg.ResyncInterval)
	for {
		if !time.Now().Before(nextResync) {
			changed, err := r.reload(ctx, conn)
			if err != nil {
				return err
			}
			r.signal(changed)
			nextResync = time.Now().Add(r.cfg.ResyncInterval)
		}
		wctx, cancel := context.WithTimeout(ctx, min(r.cfg.PingInterval, time.Until(nextResync)))
		n, err := conn.WaitForNotification(wctx)
		idle := wctx.Err() != nil
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !idle {
				return err
			}
			// Nothing for a while: make sure the silence is not a dead
			// connection.
			pctx, cancel := r.opContext(ctx, r.cfg.PingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			r.contact()
			r.signal(false) // contact may end an unavailability, if Run started late
			continue
		}
		changed, err := r.fetch(ctx, conn, r.drain(ctx, conn, n))
		if err != nil {
			return err
		}
		r.signal(changed)
	}
}

// drain collects the key ids of first and of the notifications that follow
// it within drainWindow, up to maxBatch, without duplicates. A connection
// error is left for the fetch that follows to report.
func (r *Registry) drain(ctx context.Context, conn *pgx.Conn, first *pgconn.Notification) []string {
	seen := map[string]bool{first.Payload: true}
	kids := []string{first.Payload}
	r.m.notifications.Inc()
	for len(kids) < maxBatch {
		dctx, cancel := context.WithTimeout(ctx, drainWindow)
		n, err := conn.WaitForNotification(dctx)
		cancel()
		if err != nil {
			break
		}
		r.m.notifications.Inc()
		if !seen[n.Payload] {
			seen[n.Payload] = true
			kids = append(kids, n.Payload)
		}
	}
	return kids
}

// connect opens a connection, LISTENs, checks the schema and reloads every
// key, in that order: a change committed after the reload's snapshot is
// announced on a channel already listened to, so none is missed.
func (r *Registry) connect(ctx context.Context) (*pgx.Conn, bool, error) {
	octx, cancel := r.opContext(ctx, queryTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(octx, r.connCfg)
	if err != nil {
		return nil, false, err
	}
	if _, err := conn.Exec(octx, "LISTEN "+channel); err != nil {
		closeConn(conn)
		return nil, false, fmt.Errorf("listen: %w", err)
	}
	if err := checkSchema(octx, conn); err != nil {
		closeConn(conn)
		return nil, false, err
	}
	changed, err := r.reload(octx, conn)
	if err != nil {
		closeConn(conn)
		return nil, false, err
	}
	return conn, changed, nil
}

const selectRows = "SELECT kid, entry, thumbprint, subject, revoked FROM wsproof_keys"

// reload reads every row and replaces the cache if anything differs.
func (r *Registry) reload(ctx context.Context, conn *pgx.Conn) (bool, error) {
	octx, cancel := r.opContext(ctx, queryTimeout)
	defer cancel()
	rows, err := conn.Query(octx, selectRows)
	if err != nil {
		return false, fmt.Errorf("reload: %w", err)
	}
	cur := r.entries // only Run and Open write entries: no lock needed to read it here
	next := make(map[string]*item, len(cur))
	badNow := map[string]bool{}
	changed := false
	var rw row
	_, err = pgx.ForEachRow(rows, []any{&rw.kid, &rw.entry, &rw.thumbprint, &rw.subject, &rw.revoked}, func() error {
		old := cur[rw.kid]
		it := r.parse(rw, old)
		if it == nil {
			badNow[rw.kid] = true
			return nil
		}
		next[rw.kid] = it
		changed = changed || it != old
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("reload: %w", err)
	}
	if r.beforeApply != nil {
		r.beforeApply()
	}
	for kid := range r.bad {
		if !badNow[kid] {
			delete(r.bad, kid)
		}
	}
	changed = changed || len(next) != len(cur)
	if changed {
		r.mu.Lock()
		r.entries = next
		r.mu.Unlock()
	}
	r.contact() // after the swap: see contact
	return changed, nil
}

// fetch reads the rows of kids and updates their cache entries: a key id
// without a row, or with a row that is refused, is removed.
func (r *Registry) fetch(ctx context.Context, conn *pgx.Conn, kids []string) (bool, error) {
	octx, cancel := r.opContext(ctx, queryTimeout)
	defer cancel()
	rows, err := conn.Query(octx, selectRows+" WHERE kid = ANY($1)", kids)
	if err != nil {
		return false, fmt.Errorf("fetch: %w", err)
	}
	got := make(map[string]row, len(kids))
	var rw row
	_, err = pgx.ForEachRow(rows, []any{&rw.kid, &rw.entry, &rw.thumbprint, &rw.subject, &rw.revoked}, func() error {
		got[rw.kid] = rw
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("fetch: %w", err)
	}
	if r.beforeApply != nil {
		r.beforeApply()
	}
	updates := make(map[string]*item, len(kids))
	for _, kid := range kids {
		if rw, ok := got[kid]; ok {
			updates[kid] = r.parse(rw, r.entries[kid])
		} else {
			updates[kid] = nil
			delete(r.bad, kid)
		}
	}
	changed := false
	r.mu.Lock()
	for kid, it := range updates {
		old, had := r.entries[kid]
		switch {
		case it == nil && had:
			delete(r.entries, kid)
			changed = true
		case it != nil && it != old:
			r.entries[kid] = it
			changed = true
		}
	}
	r.mu.Unlock()
	r.contact() // after the updates: see contact
	return changed, nil
}

// parse returns the cache item for rw: old if the row is unchanged, nil if
// the row is refused. A refused row is logged and counted once.
func (r *Registry) parse(rw row, old *item) *item {
	if old != nil && old.row == rw {
		return old
	}
	if prev, ok := r.bad[rw.kid]; ok && prev == rw {
		return nil
	}
	e, err := rw.parse()
	if err != nil {
		r.bad[rw.kid] = rw
		r.m.bad.Inc()
		r.log.Warn("postgres: refusing a registry row; the key is treated as absent", "kid", rw.kid, "err", err)
		return nil
	}
	delete(r.bad, rw.kid)
	return &item{row: rw, entry: e}
}

// signal calls OnChange if the cache changed or Check's answer did since
// the last call.
func (r *Registry) signal(changed bool) {
	ok := r.Check() == nil
	if ok != r.reportedOK {
		r.reportedOK = ok
		changed = true
		if !ok {
			r.log.Error("postgres: no contact with the key database for the grace period; refusing every key until it is back",
				"last_contact", time.Unix(0, r.lastContact.Load()).UTC(), "grace", r.cfg.Grace)
		}
	}
	if changed && r.cfg.OnChange != nil {
		r.cfg.OnChange()
	}
}

// sleep waits for d or until ctx is done. If the grace period ends
// meanwhile, it reports that on time.
func (r *Registry) sleep(ctx context.Context, d time.Duration) error {
	wake := time.NewTimer(d)
	defer wake.Stop()
	for {
		r.signal(false)
		var expire <-chan time.Time
		var t *time.Timer
		if r.reportedOK {
			t = time.NewTimer(max(r.graceLeft(), 0))
			expire = t.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake.C:
			return nil
		case <-expire:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// graceLeft is the time until Check fails, if contact is not renewed.
func (r *Registry) graceLeft() time.Duration {
	return time.Duration(r.lastContact.Load() + int64(r.cfg.Grace) - r.cfg.Time().UnixNano())
}

// opContext bounds one database operation by d, and by the end of the
// grace period if that comes first: an operation hanging on a silently
// dead connection must not keep Run from reporting the registry
// unavailable on time.
func (r *Registry) opContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if r.lastContact.Load() != 0 {
		if left := r.graceLeft(); left > 0 && left < d {
			d = left
		}
	}
	return context.WithTimeout(ctx, d)
}

// contact records an exchange with the database, which renews the grace
// period, and so ends an unavailability (Check passes again at once). reload
// and fetch call it only once what they read is in the cache: a node whose
// grace period had passed must not report itself current, even for an
// instant, while its cache still holds what the database no longer says,
// such as a key revoked while the node was cut off (spec section
// "Availability"). A ping, which reads nothing, calls it when it returns.
func (r *Registry) contact() {
	now := r.cfg.Time()
	r.lastContact.Store(now.UnixNano())
}

func (r *Registry) setErr(err error) {
	r.errMu.Lock()
	r.lastErr = r.redact(err)
	r.errMu.Unlock()
}

// redact returns err's text without the connection's password. pgx does
// not put passwords in its errors; this is a second line of defence for
// logs and Status.
func (r *Registry) redact(err error) string {
	s := err.Error()
	if pw := r.connCfg.Password; pw != "" {
		s = strings.ReplaceAll(s, pw, "xxxxx")
	}
	return s
}

// jitter spreads reconnections of many nodes: a uniform duration in
// [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// closeConn closes conn, not waiting long for a database that may be gone.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}

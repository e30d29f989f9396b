package postgres

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wsproof/wsproof/internal/pgtest"
	"github.com/wsproof/wsproof/keys"
)

// testCtx is a context for one test's database calls.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newEntry returns an entry with a fresh Ed25519 key, and the key.
func newEntry(t testing.TB, kid, sub string, groups ...string) (*keys.Entry, crypto.Signer) {
	t.Helper()
	k, err := keys.Generate(keys.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &keys.Entry{KeyID: kid, Key: k.Public(), Algorithm: keys.EdDSA, Subject: sub, Groups: groups}, k
}

// migrated returns the URL of a fresh, migrated database of c, and an
// Admin connected to it.
func migrated(t *testing.T, c *pgtest.Cluster) (string, *Admin) {
	t.Helper()
	url := c.NewDatabase(t)
	a := connect(t, url)
	if _, err := a.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return url, a
}

func connect(t *testing.T, url string) *Admin {
	t.Helper()
	a, err := Connect(testCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	return a
}

// sql runs a statement on a connection of its own, as an operator would.
func sql(t *testing.T, url, stmt string, args ...any) {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// running is a Registry whose Run goroutine the test owns.
type running struct {
	*Registry
	changes chan time.Time // one per OnChange call
	cancel  context.CancelFunc
	done    chan error
}

// start opens a registry on url with cfg (URL and OnChange set here) and
// runs it until the test ends.
func start(t *testing.T, url string, cfg Config) *running {
	t.Helper()
	rr := &running{changes: make(chan time.Time, 10000), done: make(chan error, 1)}
	cfg.URL = url
	cfg.OnChange = func() {
		select {
		case rr.changes <- time.Now():
		default:
			panic("OnChange channel full")
		}
	}
	r, err := Open(testCtx(t), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	rr.Registry = r
	ctx, cancel := context.WithCancel(context.Background())
	rr.cancel = cancel
	go func() { rr.done <- r.Run(ctx) }()
	t.Cleanup(func() { rr.stop(t) })
	return rr
}

// stop cancels Run and waits for it, once.
func (rr *running) stop(t *testing.T) {
	t.Helper()
	if rr.cancel == nil {
		return
	}
	rr.cancel()
	rr.cancel = nil
	select {
	case err := <-rr.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context's end")
	}
}

// waitFor polls cond every millisecond until it holds or d passes, and
// returns how long it took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// drain empties the OnChange channel and returns how many calls it held.
func (rr *running) drain() int {
	n := 0
	for {
		select {
		case <-rr.changes:
			n++
		default:
			return n
		}
	}
}

// proxy is a TCP relay between the registry and the database that can
// partition the network silently: frozen, it stops relaying without
// closing anything, and refuses new connections (so reconnection attempts
// fail fast instead of hanging).
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
	wg     sync.WaitGroup
	gate   *sync.Cond
	closed bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.gate = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.frozen || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, s)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies src to dst, holding every chunk while the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.frozen && !p.closed {
			p.gate.Wait()
		}
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			dst.Close()
			return
		}
	}
}

func (p *proxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

// cut is an outage that both ends notice at once, as when the database
// goes down: it closes every relayed connection and, like freeze, refuses
// new ones until thaw.
func (p *proxy) cut() { p.drop(true) }

// thaw ends the partition. Connections open during it stay dead, as after
// a real partition long enough for both ends to give up.
func (p *proxy) thaw() { p.drop(false) }

// drop closes every relayed connection and leaves the proxy frozen or not.
func (p *proxy) drop(frozen bool) {
	p.mu.Lock()
	p.frozen = frozen
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.gate.Broadcast()
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.gate.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

// proxied returns a proxy to the database at url, and the URL through it.
func proxied(t *testing.T, url string) (*proxy, string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	return p, fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.addr(), cfg.Database)
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

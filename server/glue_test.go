//go:build unix

package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"weak"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The tests in this file hold the server to the bounds of spec sections
// "Revocation", "Slow peers", "Keepalive" and "Shutdown" with peers that
// misbehave at the TCP level: clients whose socket buffers are full because
// they stopped reading. The server's side of each TCP connection is watched
// through a wrapped listener, so "closed" means the server closed its socket.

// trackedListener wraps the server's listener: it shrinks each accepted
// socket's send buffer, so that a client that stops reading fills it fast,
// and records, for each connection, the octets written and when it closed.
type trackedListener struct {
	net.Listener
	sndbuf int

	mu    sync.Mutex
	conns []*trackedConn
}

func trackListener(sndbuf int, ln **trackedListener) func(net.Listener) net.Listener {
	return func(l net.Listener) net.Listener {
		*ln = &trackedListener{Listener: l, sndbuf: sndbuf}
		return *ln
	}
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && l.sndbuf > 0 {
		tc.SetWriteBuffer(l.sndbuf)
	}
	t := &trackedConn{Conn: c, closed: make(chan struct{})}
	l.mu.Lock()
	l.conns = append(l.conns, t)
	l.mu.Unlock()
	return t, nil
}

func (l *trackedListener) all() []*trackedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.conns)
}

type trackedConn struct {
	net.Conn
	written   atomic.Int64
	lastWrite atomic.Int64 // Unix nanoseconds of the last Write that returned
	once      sync.Once
	closedAt  atomic.Int64 // Unix nanoseconds
	closed    chan struct{}
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	if err == nil {
		c.lastWrite.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.closedAt.Store(time.Now().UnixNano())
		close(c.closed)
	})
	return c.Conn.Close()
}

// waitClosed waits until every connection is closed, or until limit, and
// returns the latest close time relative to since (limit when one is left
// open) and the number still open.
func waitClosed(conns []*trackedConn, since time.Time, limit time.Duration) (time.Duration, int) {
	deadline := time.After(limit)
	var worst time.Duration
	open := 0
	for _, c := range conns {
		select {
		case <-c.closed:
			worst = max(worst, time.Unix(0, c.closedAt.Load()).Sub(since))
		case <-deadline:
			open++
			worst = limit
		}
	}
	return worst, open
}

// waitStalled waits until no connection has had octets written for quiet:
// the writes to clients that stopped reading are blocked.
func waitStalled(t *testing.T, conns []*trackedConn, quiet time.Duration) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := make([]int64, len(conns))
	since := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		moved := false
		for i, c := range conns {
			if n := c.written.Load(); n != last[i] {
				last[i], moved = n, true
			}
		}
		if moved {
			since = time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
	t.Fatal("the server's writes never stalled")
}

// dialRcvbuf dials with the client socket's receive buffer set to rcvbuf
// before it connects, so that a client that stops reading soon blocks the
// server's writes.
func (f *fixture) dialRcvbuf(t *testing.T, rcvbuf int) *rawClient {
	t.Helper()
	nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
		return errors.Join(err, serr)
	}}
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 10 * time.Second,
		NetDialContext: nd.DialContext}
	if f.http.TLS != nil {
		d.TLSClientConfig = &tls.Config{RootCAs: certPool(f.http), MinVersion: tls.VersionTLS13}
	}
	ws, _, err := d.Dial(f.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &rawClient{ws: ws}
	if tc, ok := ws.UnderlyingConn().(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.exporter, _ = st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
	}
	return c
}

// deliveries records, over every handler, the latest start and end of a
// Conn.Read that returned a message.
type deliveries struct {
	lastStart, lastEnd atomic.Int64
	count              atomic.Int64
}

func storeMax(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// read is Conn.Read, recorded.
func (d *deliveries) read(ctx context.Context, c *Conn) (Message, error) {
	start := time.Now().UnixNano()
	m, err := c.Read(ctx)
	if err == nil {
		storeMax(&d.lastEnd, time.Now().UnixNano())
		storeMax(&d.lastStart, start)
		d.count.Add(1)
	}
	return m, err
}

// check fails the test if a message was delivered after the spec's bound
// (one second after the registry change) or by a Read that began after the
// server had decided (after Recheck returned).
func (d *deliveries) check(t *testing.T, change, decided time.Time) {
	t.Helper()
	if end := time.Unix(0, d.lastEnd.Load()); end.After(change.Add(time.Second)) {
		t.Errorf("a revoked session's message was delivered %v after the registry change", end.Sub(change))
	}
	if start := time.Unix(0, d.lastStart.Load()); start.After(decided) {
		t.Errorf("a Read that began %v after the revocation decision returned a message", start.Sub(decided))
	}
}

// closeCodeOf returns the close code that err, from Conn.Read, carries.
func closeCodeOf(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// writeEvery sends a small binary message every period until the
// connection fails or stop is closed; it never reads.
func writeEvery(ws *websocket.Conn, period time.Duration, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			ws.SetWriteDeadline(time.Now().Add(time.Second))
			if ws.WriteMessage(websocket.BinaryMessage, []byte("tick")) != nil {
				return
			}
		}
	}()
}

// stuckSessions is a handler that sends burst octets, in 8 KiB messages, to
// each session on its own goroutine, and reads everything the client sends.
type stuckSessions struct {
	burst int
	d     deliveries

	mu   sync.Mutex
	errs []error
	wg   sync.WaitGroup
}

func (h *stuckSessions) ServeSession(ctx context.Context, c *Conn) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		msg := make([]byte, 8<<10)
		for sent := 0; sent < h.burst; sent += len(msg) {
			if c.Send(ctx, msg) != nil {
				return
			}
		}
	}()
	for {
		if _, err := h.d.read(ctx, c); err != nil {
			h.mu.Lock()
			h.errs = append(h.errs, err)
			h.mu.Unlock()
			return
		}
	}
}

// TestRevocationStuckWriters (issue 11 defect 1): revoking sessions whose
// clients stopped reading, after the server filled their socket buffers,
// must not wait on them. Recheck returns at once, every socket is closed
// within a second, and no message of a revoked session reaches the
// application after the decision.
func TestRevocationStuckWriters(t *testing.T) {
	const n = 4
	var revoked atomic.Bool
	var ln *trackedListener
	h := &stuckSessions{burst: 512 << 10}
	f := newFixtureOn(t, false, func(c *Config) {
		c.Handler = h
		c.WriteTimeout = 30 * time.Second // the writes stay blocked for the whole test
		c.Authorize = func(e *keys.Entry) error {
			if revoked.Load() {
				return errors.New("withdrawn by test")
			}
			return nil
		}
	}, trackListener(8<<10, &ln))
	stop := make(chan struct{})
	var writers sync.WaitGroup
	defer func() { close(stop); writers.Wait() }()
	for range n {
		c := f.dialRcvbuf(t, 4096)
		if err := f.handshake(t, c, "c-ES256", nil); err != nil {
			t.Fatal(err)
		}
		writeEvery(c.ws, 2*time.Millisecond, stop, &writers)
	}
	conns := ln.all()
	if len(conns) != n {
		t.Fatalf("%d connections, want %d", len(conns), n)
	}
	waitStalled(t, conns, 300*time.Millisecond)

	revoked.Store(true)
	change := time.Now()
	closed := f.srv.Recheck()
	decided := time.Now()
	took := decided.Sub(change)
	worst, open := waitClosed(conns, change, 10*time.Second)
	t.Logf("Recheck returned in %v after closing %d sockets; the last socket closed %v after the change (%d still open)",
		took, closed, worst, open)
	if closed != n {
		t.Errorf("Recheck closed %d sockets, want %d", closed, n)
	}
	if took > 50*time.Millisecond {
		t.Errorf("Recheck took %v, want under 50ms: it waited on peers", took)
	}
	if worst > time.Second || open > 0 {
		t.Errorf("the last socket closed %v after the change (%d still open), want within 1s", worst, open)
	}
	close(stop)
	writers.Wait()
	stop = make(chan struct{})
	h.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.srv.Shutdown(ctx)
	h.d.check(t, change, decided)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, err := range h.errs {
		if code := closeCodeOf(err); code != protocol.CodeSessionRevoked.CloseCode() || !errors.Is(err, ErrClosed) {
			t.Errorf("Read ended with %v, want ErrClosed and session_revoked", err)
		}
	}
	t.Logf("%d client messages delivered before the revocation", h.d.count.Load())
}

// TestRevocationThousandSessions (issue 11 item 5): 1,000 live sessions, of
// which 300 never read while the server writes to them, are revoked by an
// edit of the registry file that keys.FileRegistry.Watch reports. Every
// socket is closed within a second of the file change, and no message of a
// revoked session is delivered after the decision. It runs with the
// server's send buffers small (8 KiB, so writes to the silent peers block)
// and with the kernel's default ones (megabytes, so the server's Close frame
// is written at once behind data the peer never reads, and only dropping
// the connection ends the socket for that peer).
func TestRevocationThousandSessions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sndbuf int
	}{{"sndbuf-8KiB", 8 << 10}, {"sndbuf-default", 0}} {
		t.Run(tc.name, func(t *testing.T) { revokeThousand(t, tc.sndbuf) })
	}
}

func revokeThousand(t *testing.T, sndbuf int) {
	const total, slow = 1000, 300
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if need := uint64(2*total + 256); lim.Cur < need {
		lim.Cur = min(need, lim.Max)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); lim.Cur < need {
			t.Fatalf("the process may open %d files; this test needs %d (raise ulimit -n)", lim.Cur, need)
		}
	}
	path := filepath.Join(t.TempDir(), "registry.jwks")
	var reg *keys.FileRegistry
	var ln *trackedListener
	h := &slowOrFast{}
	f := newFixtureOn(t, false, func(c *Config) {
		data, err := keys.MarshalRegistry(c.Registry.(*keys.Set).Entries())
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, data)
		if reg, err = keys.OpenFile(path); err != nil {
			t.Fatal(err)
		}
		c.Registry = reg
		c.Handler = h
		c.HandshakeRate, c.HandshakeRatePerAddr = 1e6, 1e6
		c.MaxPending, c.MaxPendingPerAddr = 4096, 4096
		c.WriteTimeout = 30 * time.Second
	}, trackListener(sndbuf, &ln))

	// Open the sessions, eight handshakes at a time.
	start := time.Now()
	clients := make([]*rawClient, total)
	work := make(chan int)
	var dialers sync.WaitGroup
	var failMu sync.Mutex
	var failed error
	fail := func(err error) {
		failMu.Lock()
		failed = err
		failMu.Unlock()
	}
	for range 8 {
		dialers.Go(func() {
			for i := range work {
				var c *rawClient
				if i < slow {
					c = f.dialRcvbuf(t, 4096)
				} else if c2, _, err := f.dial(t, nil); err != nil {
					fail(err)
					continue
				} else {
					c = c2
				}
				if err := f.handshake(t, c, "c-EdDSA", nil); err != nil {
					fail(err)
					continue
				}
				kind := "fast"
				if i < slow {
					kind = "slow"
				}
				c.ws.WriteMessage(websocket.BinaryMessage, []byte(kind))
				clients[i] = c
			}
		})
	}
	for i := range total {
		work <- i
	}
	close(work)
	dialers.Wait()
	if failed != nil {
		err := failed
		t.Fatalf("opening the sessions: %v", err)
	}
	t.Logf("%d sessions open in %v", total, time.Since(start))

	// The readers read and every client sends a message every 250 ms.
	stop := make(chan struct{})
	var clientWG sync.WaitGroup
	codes := make(chan int, total)
	for i, c := range clients {
		writeEvery(c.ws, 250*time.Millisecond+time.Duration(i)*time.Millisecond/4, stop, &clientWG)
		if i >= slow {
			clientWG.Go(func() {
				for {
					if _, _, err := c.ws.ReadMessage(); err != nil {
						codes <- closeCodeOf(err)
						return
					}
				}
			})
		}
	}
	defer func() {
		close(stop)
		for _, c := range clients {
			c.ws.Close()
		}
		clientWG.Wait()
	}()
	for h.slowSent.Load() < slow {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("only %d slow sessions were sent their burst", h.slowSent.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	conns := ln.all()
	waitStalled(t, conns, 300*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	defer func() { cancel(); <-watchDone }()
	var recheckStart, recheckEnd atomic.Int64
	var recheckClosed atomic.Int64
	go func() {
		defer close(watchDone)
		reg.Watch(ctx, 0, func(_, _ *keys.Set) {
			recheckStart.Store(time.Now().UnixNano())
			recheckClosed.Store(int64(f.srv.Recheck()))
			recheckEnd.Store(time.Now().UnixNano())
		}, nil)
	}()
	time.Sleep(300 * time.Millisecond) // let Watch take its first snapshot

	var entries []*keys.Entry
	for _, e := range reg.Current().Entries() {
		c := *e
		if c.KeyID == "c-EdDSA" {
			c.Revoked = true
		}
		entries = append(entries, &c)
	}
	data, err := keys.MarshalRegistry(entries)
	if err != nil {
		t.Fatal(err)
	}
	change := time.Now()
	writeFile(t, path, data)
	worst, open := waitClosed(conns, change, 10*time.Second)
	t.Logf("the last socket closed %v after the file change (%d still open)", worst, open)
	for recheckEnd.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	decided := time.Unix(0, recheckEnd.Load())
	seen := time.Unix(0, recheckStart.Load()).Sub(change)
	t.Logf("revocation of %d sessions (%d not reading): Watch saw the change after %v, Recheck took %v and closed %d, "+
		"the last socket closed %v after the file change (%d still open)",
		total, slow, seen, decided.Sub(time.Unix(0, recheckStart.Load())), recheckClosed.Load(), worst, open)
	if worst > time.Second || open > 0 {
		t.Errorf("the last socket closed %v after the file change (%d still open), want within 1s", worst, open)
	}
	if recheckClosed.Load() != total {
		t.Errorf("Recheck closed %d sockets, want %d", recheckClosed.Load(), total)
	}
	close(stop)
	stop = make(chan struct{})
	for _, c := range clients {
		c.ws.Close()
	}
	clientWG.Wait()
	close(codes)
	revokedFrames := 0
	for code := range codes {
		if code == protocol.CodeSessionRevoked.CloseCode() {
			revokedFrames++
		}
	}
	t.Logf("%d of the %d reading clients received session_revoked; %d client messages delivered before",
		revokedFrames, total-slow, h.d.count.Load())
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	f.srv.Shutdown(sctx)
	h.wg.Wait()
	h.d.check(t, change, decided)
}

// slowOrFast reads the client's first message: "slow" asks for a 128 KiB
// burst, which a client that does not read cannot take; then it reads.
// slowSent counts the bursts begun.
type slowOrFast struct {
	d        deliveries
	slowSent atomic.Int64
	wg       sync.WaitGroup
}

func (h *slowOrFast) ServeSession(ctx context.Context, c *Conn) {
	h.wg.Add(1)
	defer h.wg.Done()
	m, err := c.Read(ctx)
	if err != nil {
		return
	}
	if string(m.Data) == "slow" {
		msg := make([]byte, 8<<10)
		h.wg.Go(func() {
			h.slowSent.Add(1)
			for range 16 {
				if c.Send(ctx, msg) != nil {
					return
				}
			}
		})
	}
	for {
		if _, err := h.d.read(ctx, c); err != nil {
			return
		}
	}
}

// room is a broadcast handler as an application writes one: every message
// received goes to every session.
type room struct {
	mu    sync.Mutex
	conns map[*Conn]struct{}
	errs  map[string]error // by socket ID
}

func (r *room) ServeSession(ctx context.Context, c *Conn) {
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			r.mu.Lock()
			r.errs[c.Session().SocketID] = err
			r.mu.Unlock()
			return
		}
		r.mu.Lock()
		all := make([]*Conn, 0, len(r.conns))
		for o := range r.conns {
			all = append(all, o)
		}
		r.mu.Unlock()
		for _, o := range all {
			o.Send(ctx, m.Data)
		}
	}
}

func (r *room) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// TestBroadcastSlowReaders (issue 11 defect 2): two sessions of a room stop
// reading. The others keep receiving the room's messages promptly (p99
// latency under 250 ms), and the two are closed with slow_reader.
func TestBroadcastSlowReaders(t *testing.T) {
	const readers, slow = 4, 2
	var ln *trackedListener
	r := &room{conns: map[*Conn]struct{}{}, errs: map[string]error{}}
	f := newFixtureOn(t, false, func(c *Config) { c.Handler = r }, trackListener(8<<10, &ln))
	var fast []*rawClient
	for range readers {
		c, _, err := f.dial(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.handshake(t, c, "c-ES256", nil); err != nil {
			t.Fatal(err)
		}
		fast = append(fast, c)
	}
	var slowIDs []string
	for range slow {
		c := f.dialRcvbuf(t, 4096)
		if err := f.handshake(t, c, "c-ES256", nil); err != nil {
			t.Fatal(err)
		}
		slowIDs = append(slowIDs, c.sess.SocketID)
	}
	for r.size() < readers+slow {
		time.Sleep(5 * time.Millisecond)
	}

	// fast[0] speaks every 10 ms for 3 s, 8 KiB stamped with the time it
	// was sent; every reader measures each message's latency.
	const msgs, period = 300, 10 * time.Millisecond
	lat := make([][]time.Duration, readers)
	var wg sync.WaitGroup
	for i, c := range fast {
		wg.Go(func() {
			c.ws.SetReadDeadline(time.Now().Add(msgs*period + 3*time.Second))
			for len(lat[i]) < msgs {
				_, m, err := c.ws.ReadMessage()
				if err != nil {
					return
				}
				lat[i] = append(lat[i], time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(m)))))
			}
		})
	}
	msg := make([]byte, 8<<10)
	for range msgs {
		binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
		if err := fast[0].ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(period)
	}
	wg.Wait()
	var all []time.Duration
	for i := range lat {
		all = append(all, lat[i]...)
		for range msgs - len(lat[i]) { // a message never received counts as very late
			all = append(all, time.Hour)
		}
	}
	slices.Sort(all)
	p50, p99 := all[len(all)/2], all[len(all)*99/100]
	t.Logf("broadcast latency over %d deliveries to %d reading sessions, beside %d that stopped reading: p50 %v, p99 %v, max %v",
		len(all), readers, slow, p50, p99, all[len(all)-1])
	if p99 > 250*time.Millisecond {
		t.Errorf("p99 broadcast latency %v, want under 250ms", p99)
	}
	r.mu.Lock()
	for _, sid := range slowIDs {
		err := r.errs[sid]
		if code := closeCodeOf(err); code != protocol.CodeSlowReader.CloseCode() {
			t.Errorf("slow session ended with %v, want slow_reader", err)
		}
	}
	r.mu.Unlock()
}

// TestShutdownClosesPendingSockets (issue 11 defect 7): a shutdown closes
// sockets still in the handshake with 1001, within a second.
func TestShutdownClosesPendingSockets(t *testing.T) {
	f := newFixture(t, false, nil)
	var pending []*rawClient
	for range 3 {
		c, _, err := f.dial(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ws.ReadMessage(); err != nil { // the challenge, left unanswered
			t.Fatal(err)
		}
		pending = append(pending, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- f.srv.Shutdown(ctx) }()
	for _, c := range pending {
		c.ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _, err := c.ws.ReadMessage()
		if code := closeCodeOf(err); code != websocket.CloseGoingAway {
			t.Fatalf("a pending socket ended with %v, want 1001", err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("pending sockets closed %v after Shutdown, want within 1s", d)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestClosedConnUnreachable (issue 11 defect 7): once a socket has closed,
// however it closed, no timer keeps its Conn reachable.
func TestClosedConnUnreachable(t *testing.T) {
	var revoked atomic.Bool
	var mu sync.Mutex
	var ptrs []weak.Pointer[Conn]
	keep := func(c *Conn) {
		mu.Lock()
		ptrs = append(ptrs, weak.Make(c))
		mu.Unlock()
	}
	f := newFixture(t, false, func(c *Config) {
		c.PingInterval = 100 * time.Millisecond
		c.Authorize = func(e *keys.Entry) error {
			if revoked.Load() && e.KeyID == "c-ES384" {
				return errors.New("withdrawn by test")
			}
			return nil
		}
		c.Handler = HandlerFunc(func(ctx context.Context, c *Conn) {
			keep(c)
			if c.Session().KeyID == "c-EdDSA" {
				return // the application ends the session at once
			}
			echo{}.ServeSession(ctx, c)
		})
	})
	open := func(kid string) *rawClient {
		c, _, err := f.dial(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.handshake(t, c, kid, nil); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ended := open("c-EdDSA")  // the handler returns
	peer := open("c-ES256")   // the client closes
	silent := open("c-PS256") // keepalive_timeout
	silent.ws.SetPingHandler(func(string) error { return nil })
	revokedC := open("c-ES384")       // session_revoked
	pending, _, err := f.dial(t, nil) // still in the handshake at shutdown
	if err != nil {
		t.Fatal(err)
	}
	pending.ws.ReadMessage()
	peer.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	revoked.Store(true)
	f.srv.Recheck()
	for _, c := range []*rawClient{ended, silent, revokedC} {
		closeCode(t, c.ws)
	}
	peer.ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	peer.ws.ReadMessage()
	for _, c := range f.srv.live() {
		keep(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ptrs) < 4 {
		t.Fatalf("only %d Conns seen", len(ptrs))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		alive := 0
		for _, p := range ptrs {
			if p.Value() != nil {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d closed Conns are still reachable", alive, len(ptrs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSlowReaderClosedOverTLS (issue 11 defect 7): over wss, sockets whose
// clients stopped reading are closed within a second of a revocation, and
// within a second of their write deadline passing. TLS must not add a wait
// of its own (tls.Conn.Close sends close_notify with a 5 s deadline).
func TestSlowReaderClosedOverTLS(t *testing.T) {
	t.Run("revocation", func(t *testing.T) {
		var revoked atomic.Bool
		var ln *trackedListener
		h := &stuckSessions{burst: 512 << 10}
		f := newFixtureOn(t, true, func(c *Config) {
			c.Handler = h
			c.WriteTimeout = 30 * time.Second
			c.Authorize = func(e *keys.Entry) error {
				if revoked.Load() {
					return errors.New("withdrawn by test")
				}
				return nil
			}
		}, trackListener(8<<10, &ln))
		for range 2 {
			c := f.dialRcvbuf(t, 4096)
			if err := f.handshake(t, c, "c-ES256", nil); err != nil {
				t.Fatal(err)
			}
		}
		conns := ln.all()
		waitStalled(t, conns, 300*time.Millisecond)
		revoked.Store(true)
		change := time.Now()
		f.srv.Recheck()
		worst, open := waitClosed(conns, change, 15*time.Second)
		t.Logf("the last wss socket closed %v after the revocation (%d still open)", worst, open)
		if worst > time.Second || open > 0 {
			t.Errorf("the last socket closed %v after the revocation (%d still open), want within 1s", worst, open)
		}
		h.wg.Wait()
	})
	t.Run("write deadline", func(t *testing.T) {
		const writeTimeout = 300 * time.Millisecond
		var ln *trackedListener
		h := &stuckSessions{burst: 512 << 10}
		f := newFixtureOn(t, true, func(c *Config) {
			c.Handler = h
			c.WriteTimeout = writeTimeout
		}, trackListener(8<<10, &ln))
		c := f.dialRcvbuf(t, 4096)
		if err := f.handshake(t, c, "c-ES256", nil); err != nil {
			t.Fatal(err)
		}
		conns := ln.all()
		worst, open := waitClosed(conns, time.Now(), 15*time.Second)
		last := time.Unix(0, conns[0].lastWrite.Load())
		took := time.Unix(0, conns[0].closedAt.Load()).Sub(last)
		t.Logf("the wss socket closed %v after its last completed write (write deadline %v; %v after the test began, %d open)",
			took, writeTimeout, worst, open)
		if open > 0 || took > writeTimeout+time.Second {
			t.Errorf("closed %v after the last completed write, want within the write deadline %v plus 1s", took, writeTimeout)
		}
		h.wg.Wait()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, err := range h.errs {
			if code := closeCodeOf(err); code != protocol.CodeSlowReader.CloseCode() {
				t.Errorf("Read ended with %v, want slow_reader", err)
			}
		}
	})
}

// TestKeepaliveTimeoutCode (issue 11 defect 4): a client that answers no
// Ping and sends nothing is closed with keepalive_timeout.
func TestKeepaliveTimeoutCode(t *testing.T) {
	f := newFixture(t, false, func(c *Config) { c.PingInterval = 200 * time.Millisecond })
	c, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, c, "c-ES256", nil); err != nil {
		t.Fatal(err)
	}
	c.ws.SetPingHandler(func(string) error { return nil })
	start := time.Now()
	code, reason := closeCode(t, c.ws)
	t.Logf("closed with %d %q after %v", code, reason, time.Since(start))
	if code != protocol.CodeKeepaliveTimeout.CloseCode() || reason != protocol.CodeKeepaliveTimeout.Reason() {
		t.Fatalf("closed with %d %q, want keepalive_timeout", code, reason)
	}
}

// TestLateRefreshResponse (issue 11 defect 4): a refresh response that
// arrives after the re-challenge expired closes with token_expired, which
// is retryable, rather than challenge_expired.
func TestLateRefreshResponse(t *testing.T) {
	var offset atomic.Int64
	f := newFixture(t, false, func(c *Config) {
		c.TokenLifetime = 4 * time.Second
		c.RefreshBefore = 2 * time.Second
		c.Time = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	c, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, c, "c-ES256", nil); err != nil {
		t.Fatal(err)
	}
	c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, rechallenge, err := c.ws.ReadMessage()
	if err != nil || mt != websocket.TextMessage {
		t.Fatalf("want a re-challenge, got type %d, %v", mt, err)
	}
	resp, err := c.client.Refresh(c.sess).ReadChallenge(rechallenge, rand.Reader, time.Now(), c.exporter)
	if err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(5 * time.Second)) // the server's clock is now past the token's and the re-challenge's exp
	if err := c.ws.WriteMessage(websocket.TextMessage, resp); err != nil {
		t.Fatal(err)
	}
	code, reason := closeCode(t, c.ws)
	if code != protocol.CodeTokenExpired.CloseCode() || reason != protocol.CodeTokenExpired.Reason() {
		t.Fatalf("closed with %d %q, want token_expired (%d)", code, reason, protocol.CodeTokenExpired.CloseCode())
	}
	if !protocol.CloseRetryable(code) {
		t.Fatal("token_expired is not retryable")
	}
}

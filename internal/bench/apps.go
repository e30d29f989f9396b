package bench

// The applications of the revocation and broadcast-room runs, as the server
// child serves them, and what the child reports about them on /app.
//
// The revocation run wraps the child's plain listener (connLog), which
// records for every TCP connection the octets the server wrote, when it
// wrote a Close frame and when it closed the connection: the server's own
// view, beside the load side's.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/server"
)

// pushConfig is what the revocation application sends to every session:
// Burst octets at the session's start, in 8 KiB messages, then one message
// of Size octets to every session each Every (none when Every is zero).
type pushConfig struct {
	Burst int           `json:"burst,omitempty"`
	Size  int           `json:"size,omitempty"`
	Every time.Duration `json:"every,omitempty"`
}

// childApp is the application of a server child and its instrumentation.
type childApp struct {
	handler server.Handler
	conns   *connLog // nil for the echo
	rev     *revokeApp
	room    *roomApp

	// recheckEnd is when the last Recheck run for a registry change
	// returned (Unix ns); seen when Watch reported that change.
	seen, recheckEnd atomic.Int64

	mu      sync.Mutex
	changes []registryChange
	ends    []sessionEnd
}

func newApp(cfg childConfig) (*childApp, error) {
	a := &childApp{}
	switch cfg.App {
	case "":
		a.handler = server.HandlerFunc(echoSession)
	case "revoke":
		a.rev = &revokeApp{a: a, push: cfg.Push, conns: map[*server.Conn]struct{}{}}
		a.handler, a.conns = a.rev, &connLog{}
	case "room":
		// No connLog: the wrapper would cost the room's writes their
		// writev (net.Buffers writes each buffer of a wrapped conn apart).
		a.room = &roomApp{a: a, conns: map[*server.Conn]struct{}{}}
		a.handler = a.room
	default:
		return nil, fmt.Errorf("unknown application %q", cfg.App)
	}
	return a, nil
}

// registryChange is one change Watch reported: when it called back, when
// Recheck returned, and how many sockets Recheck closed.
type registryChange struct {
	SeenNs    int64 `json:"seen_ns"`
	DecidedNs int64 `json:"decided_ns"`
	Closed    int   `json:"closed"`
}

func (a *childApp) changed(seen, decided time.Time, closed int) {
	a.seen.Store(seen.UnixNano())
	a.recheckEnd.Store(decided.UnixNano())
	a.mu.Lock()
	a.changes = append(a.changes, registryChange{SeenNs: seen.UnixNano(), DecidedNs: decided.UnixNano(), Closed: closed})
	a.mu.Unlock()
}

// sessionEnd is how one session's handler saw its socket end: the close
// code Read's error carries (the server's, or the client's) and when Read
// returned it. For the room, FailedNs is when a broadcast's Send to it
// first failed: the server's decision to close it, when it was the room's.
type sessionEnd struct {
	SocketID string `json:"sid"`
	Code     int    `json:"code"`
	Err      string `json:"err,omitempty"` // when there is no close code
	AtNs     int64  `json:"at_ns"`
	FailedNs int64  `json:"send_failed_ns,omitempty"`
}

func (a *childApp) ended(c *server.Conn, err error, failedNs int64) {
	e := sessionEnd{SocketID: c.Session().SocketID, AtNs: time.Now().UnixNano(), FailedNs: failedNs}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		e.Code = ce.Code
	} else {
		e.Err = errKind(err)
	}
	a.mu.Lock()
	a.ends = append(a.ends, e)
	a.mu.Unlock()
}

// appReport is what /app returns.
type appReport struct {
	Changes []registryChange `json:"changes,omitempty"`
	Ends    []sessionEnd     `json:"ends,omitempty"`
	Conns   []connRecord     `json:"conns,omitempty"`
	Revoke  *revokeCounts    `json:"revoke,omitempty"`
	Room    *roomCounts      `json:"room,omitempty"`
}

func (a *childApp) report() *appReport {
	r := &appReport{}
	a.mu.Lock()
	r.Changes = append(r.Changes, a.changes...)
	r.Ends = append(r.Ends, a.ends...)
	a.mu.Unlock()
	if a.conns != nil {
		r.Conns = a.conns.records()
	}
	if a.rev != nil {
		r.Revoke = a.rev.counts()
	}
	if a.room != nil {
		r.Room = &roomCounts{Received: a.room.received.Load(), Sends: a.room.sends.Load(), SendErrors: a.room.sendErrs.Load()}
	}
	return r
}

// revokeApp keeps sending to every session (pushConfig) and reads what each
// sends, counting the messages Read returns around the revocation.
//
// A message counts as delivered after the decision when the Read that
// returned it began after the server had decided to close the session: after
// the session's handler context was done (the server cancels it under the
// socket's lock, in the same step that decides the close, server/conn.go
// end) or after the Recheck that closed it returned. A Read that began
// before the decision and returned a message after it is counted apart
// (inFlight): the server hands a message over under the same lock as it
// decides, so such a message was delivered just before the decision and
// returned just after it, which the handler cannot tell from a delivery
// after the decision; server/conn.go readOne drops a message read once the
// socket has closed.
type revokeApp struct {
	a    *childApp
	push pushConfig

	mu     sync.Mutex
	conns  map[*server.Conn]struct{}
	pusher sync.Once

	sessions, bursts                       atomic.Int64
	delivered, afterDecision, inFlight     atomic.Int64
	afterSeen, lastDelivery, lastAfterSeen atomic.Int64
}

// revokeCounts is the revocation application's part of /app.
type revokeCounts struct {
	Sessions int64 `json:"sessions"`
	Bursts   int64 `json:"bursts"` // sessions whose start burst was queued in full
	// Delivered counts every message Read returned; AfterDecision and
	// InFlight are defined on revokeApp; AfterSeen counts the messages
	// Read returned once Watch had reported the change (the server saw
	// it), whenever the Read began.
	Delivered      int64 `json:"delivered"`
	AfterDecision  int64 `json:"after_decision"`
	InFlight       int64 `json:"in_flight_at_decision"`
	AfterSeen      int64 `json:"after_seen"`
	LastDeliveryNs int64 `json:"last_delivery_ns"`
}

func (r *revokeApp) counts() *revokeCounts {
	return &revokeCounts{Sessions: r.sessions.Load(), Bursts: r.bursts.Load(), Delivered: r.delivered.Load(),
		AfterDecision: r.afterDecision.Load(), InFlight: r.inFlight.Load(), AfterSeen: r.afterSeen.Load(),
		LastDeliveryNs: r.lastDelivery.Load()}
}

func (r *revokeApp) ServeSession(ctx context.Context, c *server.Conn) {
	r.sessions.Add(1)
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
	if r.push.Every > 0 {
		r.pusher.Do(func() { go r.pushLoop() })
	}
	go func() {
		msg := make([]byte, 8<<10)
		for sent := 0; sent < r.push.Burst; sent += len(msg) {
			if c.Send(ctx, msg) != nil {
				return
			}
		}
		r.bursts.Add(1)
	}()
	for {
		decided := ctx.Err() != nil
		start := time.Now().UnixNano()
		_, err := c.Read(ctx)
		if err != nil {
			r.a.ended(c, err, 0)
			return
		}
		now := time.Now().UnixNano()
		r.delivered.Add(1)
		storeMax(&r.lastDelivery, now)
		end := r.a.recheckEnd.Load()
		switch {
		case decided || (end != 0 && start > end):
			r.afterDecision.Add(1)
		case ctx.Err() != nil:
			r.inFlight.Add(1)
		}
		if seen := r.a.seen.Load(); seen != 0 && now >= seen {
			r.afterSeen.Add(1)
		}
	}
}

// pushLoop sends one message to every session each push.Every, with the
// non-blocking Send, for the child's life.
func (r *revokeApp) pushLoop() {
	msg := make([]byte, r.push.Size)
	t := time.NewTicker(r.push.Every)
	defer t.Stop()
	for range t.C {
		r.mu.Lock()
		all := make([]*server.Conn, 0, len(r.conns))
		for c := range r.conns {
			all = append(all, c)
		}
		r.mu.Unlock()
		for _, c := range all {
			c.Send(context.Background(), msg)
		}
	}
}

// roomApp is a broadcast room, as cmd/wsproof/serve.go's: every message a
// session sends goes to every session in the room, the sender included,
// with the non-blocking Send, in a loop on the sender's handler goroutine.
type roomApp struct {
	a *childApp

	mu    sync.Mutex
	conns map[*server.Conn]struct{}

	received, sends, sendErrs atomic.Int64
	firstFail                 sync.Map // *server.Conn -> int64, Unix ns of its first failed Send
}

// roomCounts is the room's part of /app.
type roomCounts struct {
	Received   int64 `json:"received"`    // messages sessions sent to the room
	Sends      int64 `json:"sends"`       // Send calls of the broadcasts
	SendErrors int64 `json:"send_errors"` // of which failed (the socket was closed)
}

func (r *roomApp) ServeSession(ctx context.Context, c *server.Conn) {
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
			var failed int64
			if v, ok := r.firstFail.Load(c); ok {
				failed = v.(int64)
				r.firstFail.Delete(c)
			}
			r.a.ended(c, err, failed)
			return
		}
		r.received.Add(1)
		r.mu.Lock()
		all := make([]*server.Conn, 0, len(r.conns))
		for o := range r.conns {
			all = append(all, o)
		}
		r.mu.Unlock()
		for _, o := range all {
			r.sends.Add(1)
			if o.Send(ctx, m.Data) != nil {
				r.sendErrs.Add(1)
				r.firstFail.LoadOrStore(o, time.Now().UnixNano())
			}
		}
	}
}

// connLog wraps a listener and records, for each accepted connection, the
// octets written to it, when a WebSocket Close frame was written to it in
// full, and when the server closed it.
type connLog struct {
	mu    sync.Mutex
	conns []*loggedConn
}

type loggedListener struct {
	net.Listener
	log *connLog
}

type loggedConn struct {
	net.Conn
	remote     string
	written    atomic.Int64
	closeFrame atomic.Int64
	once       sync.Once
	closedAt   atomic.Int64
}

// connRecord is one connection in /app: its remote address (the client's
// local address), octets written, when a Close frame was written in full and
// when the server closed the connection (Unix ns; zero if not).
type connRecord struct {
	Remote       string `json:"remote"`
	Written      int64  `json:"written"`
	CloseFrameNs int64  `json:"close_frame_ns,omitempty"`
	ClosedNs     int64  `json:"closed_ns,omitempty"`
}

func (l *connLog) wrap(ln net.Listener) net.Listener { return &loggedListener{Listener: ln, log: l} }

func (l *loggedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &loggedConn{Conn: c, remote: c.RemoteAddr().String()}
	l.log.mu.Lock()
	l.log.conns = append(l.log.conns, lc)
	l.log.mu.Unlock()
	return lc, nil
}

// Write counts what it wrote. gorilla writes a control frame in one Write,
// and a server's frames are unmasked: a Close frame is 0x88, its payload
// length (at most 125) and the payload.
func (c *loggedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	if n == len(b) && n >= 2 && n <= 127 && b[0] == 0x88 && int(b[1]) == n-2 {
		c.closeFrame.CompareAndSwap(0, time.Now().UnixNano())
	}
	return n, err
}

// sndbufListener sets SO_SNDBUF on every connection it accepts, which it
// returns as they are (so that writes keep their writev).
type sndbufListener struct {
	net.Listener
	n int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.SetWriteBuffer(l.n); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *loggedConn) Close() error {
	c.once.Do(func() { c.closedAt.Store(time.Now().UnixNano()) })
	return c.Conn.Close()
}

func (l *connLog) records() []connRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]connRecord, len(l.conns))
	for i, c := range l.conns {
		out[i] = connRecord{Remote: c.remote, Written: c.written.Load(), CloseFrameNs: c.closeFrame.Load(), ClosedNs: c.closedAt.Load()}
	}
	return out
}

// storeMax raises v to n.
func storeMax(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

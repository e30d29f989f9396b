package bench

// The revocation run (issue 11, item 5): a server child serves N live
// authenticated sessions from a registry file that it watches as wsproof
// serve does (keys.FileRegistry.Watch at its default interval, Recheck on
// every change). Its application (apps.go, revokeApp) keeps sending to every
// session, and Slow of the sessions never read, from sockets with a small
// receive buffer, so that their buffers fill and the server's writes to
// them block. Every session sends a small message every SendEvery. Then the
// load side revokes the sessions' key by renaming a new registry file over
// the old one, and measures, from the rename, when it sees each socket end:
// a reading session when its Close frame arrives (or its connection drops),
// a non-reading one when its kernel reports the connection reset (hangups).
// The child reports when Watch saw the change, how long Recheck took, when
// it closed each TCP connection, and how many messages its handler was given
// after the decision (revokeApp defines it). The baseline is the same run
// with every session reading.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// revokeOptions are the sizes of the revocation runs.
type revokeOptions struct {
	n, slow   int
	sendEvery time.Duration // each session sends a message this often
	push      pushConfig    // what the server sends every session
	rcvbuf    int           // SO_RCVBUF of the non-reading sockets
	sndbuf    int           // SO_SNDBUF of the server's sockets, in the cases that set it
	wait      time.Duration // how long after the rename to wait for every socket
	// writeTimeout is the server's: above the run's length, so that the
	// writes to the non-reading sockets are still blocked at the
	// revocation rather than already failed with slow_reader.
	writeTimeout time.Duration
}

func defaultRevokeOptions(quick bool) revokeOptions {
	r := revokeOptions{n: 1000, slow: 300, sendEvery: 50 * time.Millisecond,
		push:   pushConfig{Burst: 128 << 10, Size: 1 << 10, Every: 200 * time.Millisecond},
		rcvbuf: 4096, sndbuf: 8 << 10, wait: 10 * time.Second, writeTimeout: time.Minute}
	if quick {
		r.n, r.slow = 100, 30
	}
	return r
}

// revSession is one session of the load side.
type revSession struct {
	c     *rawConn
	slow  bool
	local string
	endNs atomic.Int64 // when the load side saw the socket end
	how   string       // reading sessions: how it ended, set before endNs
}

// revokeCases are the configurations of a revocation run: the baseline,
// in which every session reads; the measured case, in which slow sessions
// never read and the server's sockets have a send buffer of sndbuf octets
// (as server/glue_test.go's), so that its writes to them block; and the
// same with the kernel's default, autotuned send buffer, which takes
// megabytes before a write blocks, so that the server's Close frame is
// written, behind the data their clients never read.
func revokeCases(ro revokeOptions) []*RevokeCase {
	return []*RevokeCase{
		{Name: fmt.Sprintf("baseline: all %d read, server send buffer %s", ro.n, sizeName(ro.sndbuf)), SndBuf: ro.sndbuf},
		{Name: fmt.Sprintf("%d of %d not reading, server send buffer %s", ro.slow, ro.n, sizeName(ro.sndbuf)), Slow: ro.slow, SndBuf: ro.sndbuf},
		{Name: fmt.Sprintf("%d of %d not reading, the kernel's default send buffer", ro.slow, ro.n), Slow: ro.slow},
	}
}

// revoke runs every case o.runs times, interleaved.
func (b *bench) revoke() error {
	o, ro := b.o, b.o.revoke
	res := &RevokeResult{N: ro.n, Slow: ro.slow, SendEvery: ro.sendEvery.String(), Burst: ro.push.Burst,
		PushSize: ro.push.Size, PushEvery: ro.push.Every.String(), Rcvbuf: ro.rcvbuf, SndBuf: ro.sndbuf,
		WatchInterval: keys.DefaultWatchInterval.String(), WriteTimeout: ro.writeTimeout.String(), Wait: ro.wait.String(),
		Cases: revokeCases(ro)}
	type lats struct{ reading, slow []time.Duration }
	all := make([]lats, len(res.Cases))
	for rep := range o.runs {
		for i, c := range res.Cases {
			run, reading, slow, err := b.revokeRun(rep, i, c)
			if err != nil {
				return err
			}
			c.Runs = append(c.Runs, *run)
			all[i].reading = append(all[i].reading, reading...)
			all[i].slow = append(all[i].slow, slow...)
			b.logf("revoke %d/%d %s: the load side saw the last socket end %.0f ms after the rename (reading p50 %.0f, last %.0f; not reading p50 %.0f, last %.0f); at the server: last Close frame written or connection dropped %.0f ms, last connection dropped %.0f ms, Close frames written to %d non-reading sockets; Watch %.0f ms, Recheck %.1f ms closed %d; open %d; messages delivered %d, after the decision %d, in flight at it %d, after Watch saw the change %d; reading sessions saw %v; handlers saw %v; written to each non-reading socket, median %.0f B",
				rep+1, o.runs, c.Name, run.LastMs, run.ReadingP50Ms, run.ReadingLastMs, run.SlowP50Ms, run.SlowLastMs,
				run.ServerMs, run.ServerDropMs, run.SlowFrames, run.WatchMs, run.RecheckMs, run.Closed, run.Open,
				run.Delivered, run.AfterDecision, run.InFlight, run.AfterSeen, run.ReadingEnds, run.ServerEnds, run.SlowWrittenMedian)
		}
	}
	for i, c := range res.Cases {
		rs := c.Runs
		c.LastMs = median(pick(rs, func(r RevokeRun) float64 { return r.LastMs }))
		c.LastAfterWatchMs = median(pick(rs, func(r RevokeRun) float64 { return r.LastAfterWatchMs }))
		c.ReadingP50Ms = median(pick(rs, func(r RevokeRun) float64 { return r.ReadingP50Ms }))
		c.ReadingLastMs = median(pick(rs, func(r RevokeRun) float64 { return r.ReadingLastMs }))
		c.SlowP50Ms = median(pick(rs, func(r RevokeRun) float64 { return r.SlowP50Ms }))
		c.SlowLastMs = median(pick(rs, func(r RevokeRun) float64 { return r.SlowLastMs }))
		c.ServerMs = median(pick(rs, func(r RevokeRun) float64 { return r.ServerMs }))
		c.ServerDropMs = median(pick(rs, func(r RevokeRun) float64 { return r.ServerDropMs }))
		c.WatchMs = median(pick(rs, func(r RevokeRun) float64 { return r.WatchMs }))
		c.RecheckMs = median(pick(rs, func(r RevokeRun) float64 { return r.RecheckMs }))
		for _, r := range rs {
			c.WorstMs = max(c.WorstMs, r.LastMs)
			c.WorstServerMs = max(c.WorstServerMs, r.ServerMs)
			c.Open += r.Open
			c.AfterDecision += r.AfterDecision
			c.InFlight += r.InFlight
			c.AfterSeen += r.AfterSeen
			c.Delivered += r.Delivered
		}
		sortDurations(all[i].reading)
		sortDurations(all[i].slow)
		c.ReadingCDF, c.SlowCDF = cdf(all[i].reading), cdf(all[i].slow)
	}
	b.res.Revoke = res
	if o.quick {
		return revokeCheck(res)
	}
	return nil
}

// loadSideBound reports whether the spec's second applies to a case as the
// load side sees it: not when a non-reading socket's Close frame fits in
// the server's kernel buffer, since its client cannot see the frame there
// and learns of the drop that follows the server's wait for its answer.
func loadSideBound(c *RevokeCase) bool { return c.Slow == 0 || c.SndBuf > 0 }

// revokeCheck is the quick run's check, on every run: no message delivered
// after the decision; every socket closed (Close frame written or
// connection dropped) at the server within the spec's second of the
// registry change; and, where loadSideBound holds, every socket seen
// closed by the load side within that second.
func revokeCheck(r *RevokeResult) error {
	var errs []error
	for _, c := range r.Cases {
		for i, run := range c.Runs {
			if loadSideBound(c) && (run.Open > 0 || run.LastMs > 1000) {
				errs = append(errs, fmt.Errorf("revoke (%s), run %d: the load side saw the last socket end %.0f ms after the registry change, %d never did (limit 1000 ms)",
					c.Name, i+1, run.LastMs, run.Open))
			}
			if run.ServerMs > 1000 {
				errs = append(errs, fmt.Errorf("revoke (%s), run %d: the server wrote the last Close frame or dropped the last connection %.0f ms after the registry change (limit 1000 ms)",
					c.Name, i+1, run.ServerMs))
			}
			if run.AfterDecision != 0 {
				errs = append(errs, fmt.Errorf("revoke (%s), run %d: %d messages delivered after the decision", c.Name, i+1, run.AfterDecision))
			}
			if run.Closed != run.Sessions {
				errs = append(errs, fmt.Errorf("revoke (%s), run %d: Recheck closed %d of %d sessions", c.Name, i+1, run.Closed, run.Sessions))
			}
		}
	}
	return errors.Join(errs...)
}

// revokeRun is one revocation of one case. It returns the close times,
// after the rename, of the reading and the non-reading sessions as the load
// side saw them.
func (b *bench) revokeRun(rep, ci int, rc *RevokeCase) (*RevokeRun, []time.Duration, []time.Duration, error) {
	ro, slow := b.o.revoke, rc.Slow
	regPath := filepath.Join(b.e.dir, fmt.Sprintf("revoke-%d-%d.jwks", rep, ci))
	if err := writeAtomic(regPath, b.e.registry); err != nil {
		return nil, nil, nil, err
	}
	s, err := b.e.startApp(fmt.Sprintf("revoke-%d-%d", rep, ci), func(c *childConfig) {
		c.App, c.RegistryFile, c.Push, c.WriteTimeout, c.SndBuf = "revoke", regPath, ro.push, ro.writeTimeout, rc.SndBuf
	})
	if err != nil {
		return nil, nil, nil, err
	}
	defer s.stop()

	hup, err := newHangups(ro.n)
	if err != nil {
		return nil, nil, nil, err
	}
	defer hup.close()
	sess, err := b.openRevokeSessions(s, ro.n, slow, hup)
	defer func() {
		for _, rs := range sess {
			if rs != nil {
				rs.c.close()
			}
		}
	}()
	if err != nil {
		return nil, nil, nil, err
	}

	// Every session sends a 16-byte message every sendEvery, each from its
	// own phase of the period.
	stop := make(chan struct{})
	var writers sync.WaitGroup
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		writers.Wait()
	}()
	for i, rs := range sess {
		writers.Go(func() {
			if !sleepUntil(stop, time.Duration(i)*ro.sendEvery/time.Duration(len(sess))) {
				return
			}
			t := time.NewTicker(ro.sendEvery)
			defer t.Stop()
			msg := make([]byte, 16)
			for {
				rs.c.wmu.Lock()
				rs.c.ws.SetWriteDeadline(time.Now().Add(time.Second))
				err := rs.c.ws.WriteMessage(websocket.BinaryMessage, msg)
				rs.c.wmu.Unlock()
				if err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		})
	}

	// Wait until every session has had its burst queued and, with a small
	// send buffer, the server's writes to the non-reading sockets have
	// stalled (no octet written to any of them for 500 ms), or, with the
	// kernel's, each has been written its burst (far more than its client's
	// receive buffer holds); then for one more sending period.
	slowAddr := map[string]bool{}
	for _, rs := range sess {
		if rs.slow {
			slowAddr[rs.local] = true
		}
	}
	var rep0 *appReport
	deadline := time.Now().Add(60 * time.Second)
	var last int64 = -1
	still := time.Now()
	for {
		if time.Now().After(deadline) {
			return nil, nil, nil, fmt.Errorf("revoke (%s): the server's writes to the %d non-reading sockets neither stalled nor completed their bursts in 60 s", rc.Name, slow)
		}
		time.Sleep(100 * time.Millisecond)
		if rep0, err = appOf(s); err != nil {
			return nil, nil, nil, err
		}
		var w int64
		for _, c := range rep0.Conns {
			if slowAddr[c.Remote] {
				w += c.Written
			}
		}
		if w != last {
			last, still = w, time.Now()
		}
		full := true
		for _, c := range rep0.Conns {
			full = full && (!slowAddr[c.Remote] || c.Written >= int64(ro.push.Burst))
		}
		if rep0.Revoke.Bursts == int64(ro.n) && ((rc.SndBuf > 0 && time.Since(still) >= 500*time.Millisecond) || (rc.SndBuf == 0 && full)) {
			break
		}
	}
	time.Sleep(ro.sendEvery)
	for i, rs := range sess {
		if rs.endNs.Load() != 0 || hup.at[i].Load() != 0 {
			return nil, nil, nil, fmt.Errorf("revoke: a session ended before the revocation (%s)", rs.how)
		}
	}

	// Revoke the key every session uses: a new registry file, renamed over
	// the old one.
	set, err := keys.ParseRegistry(b.e.registry)
	if err != nil {
		return nil, nil, nil, err
	}
	var entries []*keys.Entry
	for _, e := range set.Entries() {
		c := *e
		if c.KeyID == kidOf(keys.ES256) {
			c.Revoked = true
		}
		entries = append(entries, &c)
	}
	data, err := keys.MarshalRegistry(entries)
	if err != nil {
		return nil, nil, nil, err
	}
	tmp := regPath + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return nil, nil, nil, err
	}
	change := time.Now()
	if err := os.Rename(tmp, regPath); err != nil {
		return nil, nil, nil, err
	}

	// Wait for every socket to end, as the load side sees it.
	end := func(i int, rs *revSession) int64 {
		if rs.slow {
			return hup.at[i].Load()
		}
		return rs.endNs.Load()
	}
	for wait := time.Now().Add(ro.wait); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
		open := 0
		for i, rs := range sess {
			if end(i, rs) == 0 {
				open++
			}
		}
		if open == 0 {
			break
		}
	}
	close(stop)
	writers.Wait()
	// The handlers' Read returns once the server has dropped the
	// connection, which can come after the load side saw the Close frame:
	// wait (a little) for every handler to have ended.
	var rep1 *appReport
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rep1, err = appOf(s); err != nil {
			return nil, nil, nil, err
		}
		if len(rep1.Ends) >= ro.n || time.Now().After(deadline) {
			break
		}
	}

	run := &RevokeRun{ReadingEnds: map[string]int{}, ServerEnds: map[string]int{}, Sessions: ro.n}
	var reading, slowLat []time.Duration
	waitMs := ms(ro.wait)
	for i, rs := range sess {
		e := end(i, rs)
		if e == 0 {
			run.Open++
			continue
		}
		d := time.Duration(e - change.UnixNano())
		if rs.slow {
			slowLat = append(slowLat, d)
		} else {
			reading = append(reading, d)
			run.ReadingEnds[rs.how]++
		}
	}
	sortDurations(reading)
	sortDurations(slowLat)
	run.ReadingP50Ms, run.ReadingP99Ms = ms(percentile(reading, 0.5)), ms(percentile(reading, 0.99))
	if len(reading) > 0 {
		run.ReadingLastMs = ms(reading[len(reading)-1])
	}
	if len(slowLat) > 0 {
		run.SlowP50Ms, run.SlowP99Ms, run.SlowLastMs = ms(percentile(slowLat, 0.5)), ms(percentile(slowLat, 0.99)), ms(slowLat[len(slowLat)-1])
	}
	run.LastMs = max(run.ReadingLastMs, run.SlowLastMs)
	if run.Open > 0 {
		run.LastMs = waitMs
	}
	var written []float64
	for _, c := range rep0.Conns {
		if slowAddr[c.Remote] {
			written = append(written, float64(c.Written))
		}
	}
	run.SlowWrittenMedian = median(written)
	after := func(ns int64) float64 { return ms(time.Duration(ns - change.UnixNano())) }
	for _, c := range rep1.Conns {
		first := c.ClosedNs
		if c.CloseFrameNs != 0 && (first == 0 || c.CloseFrameNs < first) {
			first = c.CloseFrameNs
		}
		if first == 0 {
			run.ServerMs = max(run.ServerMs, waitMs)
		} else {
			run.ServerMs = max(run.ServerMs, after(first))
		}
		if c.ClosedNs != 0 {
			run.ServerDropMs = max(run.ServerDropMs, after(c.ClosedNs))
		}
		if slowAddr[c.Remote] && c.CloseFrameNs != 0 {
			run.SlowFrames++
		}
	}
	if len(rep1.Changes) > 0 {
		ch := rep1.Changes[0]
		run.WatchMs = ms(time.Duration(ch.SeenNs - change.UnixNano()))
		run.RecheckMs = ms(time.Duration(ch.DecidedNs - ch.SeenNs))
		run.Closed = ch.Closed
		if len(rep1.Changes) > 1 {
			b.res.Errors = append(b.res.Errors, fmt.Sprintf("revoke: Watch reported %d changes for one rename", len(rep1.Changes)))
		}
	}
	run.LastAfterWatchMs = run.LastMs - run.WatchMs
	for _, e := range rep1.Ends {
		run.ServerEnds[endName(e)]++
	}
	if rc := rep1.Revoke; rc != nil {
		run.Delivered, run.AfterDecision, run.InFlight, run.AfterSeen = rc.Delivered, rc.AfterDecision, rc.InFlight, rc.AfterSeen
	}
	return run, reading, slowLat, nil
}

// endName names how a session's handler saw it end.
func endName(e sessionEnd) string {
	if e.Code != 0 {
		name := fmt.Sprintf("close %d", e.Code)
		for _, c := range []protocol.Code{protocol.CodeSessionRevoked, protocol.CodeSlowReader, protocol.CodeKeepaliveTimeout, protocol.CodeTokenExpired} {
			if c.CloseCode() == e.Code {
				name += " " + string(c)
			}
		}
		return name
	}
	return e.Err
}

// openRevokeSessions opens n authenticated sessions, the first slow of them
// with a small receive buffer: those are never read and are watched by hup;
// the others read everything (answering re-challenges as clients do) and
// record when and how they end.
func (b *bench) openRevokeSessions(s *child, n, slow int, hup *hangups) ([]*revSession, error) {
	ro := b.o.revoke
	pc, err := b.e.protoClient(keys.ES256)
	if err != nil {
		return nil, err
	}
	u := wsURL(s.ready.WS, "/ws", false)
	fast, stuck := rcvbufDialer(b.src, 0), rcvbufDialer(b.src, ro.rcvbuf)
	out := make([]*revSession, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d := fast
			if i < slow {
				d = stuck
			}
			c, err := dialRaw(ctx, d, u, pc)
			if err != nil {
				errs[i] = err
				return
			}
			rs := &revSession{c: c, slow: i < slow, local: c.ws.NetConn().LocalAddr().String()}
			out[i] = rs
			if rs.slow {
				errs[i] = hup.add(i, c.ws.NetConn())
				return
			}
			go func() {
				c.serveWith(nil)
				rs.how = closeKind(c.err)
				rs.endNs.Store(time.Now().UnixNano())
			}()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("opening the sessions: %w", err)
	}
	return out, nil
}

// appOf reads the child's /app report.
func appOf(s *child) (*appReport, error) {
	r := &appReport{}
	if err := s.get("/app", r); err != nil {
		return nil, err
	}
	return r, nil
}

// writeAtomic writes a file through a temporary file renamed over it.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// sortedCounts renders a map of counts in a stable order.
func sortedCounts(m map[string]int) string {
	if len(m) == 0 {
		return "–"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s: %d", k, m[k])
	}
	return out
}

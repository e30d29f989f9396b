package bench

// The broadcast room (issue 11, item 5): a server child whose application
// is a room as cmd/wsproof/serve.go's (apps.go, roomApp: every message a
// session sends goes to every session with the non-blocking Send). Readers
// reading sessions join it, and Slow sessions that never read, from sockets
// with a small receive buffer. One reading session sends a broadcast of Size
// octets every Every for Duration, stamped with its send time; every reading
// session, the sender included, measures each broadcast's latency from send
// to receipt. A broadcast a reading session never receives counts as later
// than any received. The child reports what happened to the non-reading
// sessions: the close code their handlers saw and when the room's Sends to
// them started failing (the server's decision). The baseline is the same
// room without the non-reading sessions.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// roomOptions are the sizes of the room runs.
type roomOptions struct {
	readers, slow int
	every         time.Duration
	size          int
	dur           time.Duration
	rcvbuf        int
	sndbuf        int // SO_SNDBUF of the server's sockets, in the cases that set it
	// settle bounds the wait, after the last broadcast, for the readers to
	// receive everything and for the non-reading sessions to be closed.
	settle time.Duration
}

func defaultRoomOptions(quick bool) roomOptions {
	// 15 s: with the kernel's default send buffer, a non-reading
	// session's connection takes about 2.7 MiB before the server's writes
	// to it block, and its queue the server's 1 MiB bound after that: at
	// 8 KiB every 20 ms, about 9.5 s.
	r := roomOptions{readers: 50, slow: 2, every: 20 * time.Millisecond, size: 8 << 10, dur: 15 * time.Second,
		rcvbuf: 4096, sndbuf: 8 << 10, settle: 15 * time.Second}
	if quick {
		// 4 s: with an 8 KiB send buffer, a non-reading session's queue
		// passes the 1 MiB bound after about 2.6 s.
		r.readers, r.dur, r.settle = 10, 4*time.Second, 2*time.Second
	}
	return r
}

// roomReader is one reading session's receipts.
type roomReader struct {
	c    *rawConn
	mu   sync.Mutex
	lat  []time.Duration
	seen map[uint64]bool
	bad  atomic.Int64 // messages that were not a broadcast of this run
	how  string       // how it ended, if it did, set before ended
	end  atomic.Bool
}

// roomCases are the configurations of a room run: the baseline, without
// the non-reading sessions; the measured case, with them and the server's
// sockets with a send buffer of sndbuf octets (as server/glue_test.go's),
// so that the room's messages for them wait in the server's queue; and the
// same with the kernel's default, autotuned send buffer, which takes
// megabytes first.
func roomCases(ro roomOptions) []*RoomCase {
	return []*RoomCase{
		{Name: fmt.Sprintf("baseline: %d reading, server send buffer %s", ro.readers, sizeName(ro.sndbuf)), SndBuf: ro.sndbuf},
		{Name: fmt.Sprintf("%d reading + %d not reading, server send buffer %s", ro.readers, ro.slow, sizeName(ro.sndbuf)), Slow: ro.slow, SndBuf: ro.sndbuf},
		{Name: fmt.Sprintf("%d reading + %d not reading, the kernel's default send buffer", ro.readers, ro.slow), Slow: ro.slow},
	}
}

// room runs every case o.runs times, interleaved.
func (b *bench) room() error {
	o, ro := b.o, b.o.room
	res := &RoomResult{Readers: ro.readers, Slow: ro.slow, Every: ro.every.String(), Size: ro.size,
		Duration: ro.dur.String(), Rcvbuf: ro.rcvbuf, SndBuf: ro.sndbuf, MaxQueued: 1 << 20, Cases: roomCases(ro)}
	all := make([][]time.Duration, len(res.Cases))
	for rep := range o.runs {
		for i, c := range res.Cases {
			run, lat, ends, err := b.roomRun(rep, i, c)
			if err != nil {
				return err
			}
			c.Runs = append(c.Runs, *run)
			all[i] = append(all[i], lat...)
			c.Sent += run.Sent
			c.Expected += run.Sent * int64(ro.readers)
			c.Lost += run.Lost
			for k, v := range ends {
				if c.ReaderEnds == nil {
					c.ReaderEnds = map[string]int{}
				}
				c.ReaderEnds[k] += v
			}
			b.logf("room %d/%d %s: %d broadcasts, p50 %.1f ms p99 %.1f ms max %.1f ms, lost %d, readers ended %v, room Sends failed %d; non-reading: %s",
				rep+1, o.runs, c.Name, run.Sent, run.P50ms, run.P99ms, run.MaxMs, run.Lost, ends, run.SendErrors, slowEndsText(run.SlowEnds))
		}
	}
	for i, c := range res.Cases {
		c.P50ms = median(pick(c.Runs, func(r RoomRun) float64 { return r.P50ms }))
		c.P99ms = median(pick(c.Runs, func(r RoomRun) float64 { return r.P99ms }))
		c.MaxMs = median(pick(c.Runs, func(r RoomRun) float64 { return r.MaxMs }))
		for _, r := range c.Runs {
			c.WorstP99 = max(c.WorstP99, r.P99ms)
		}
		sortDurations(all[i])
		c.CDF = cdf(all[i])
	}
	b.res.Room = res
	if o.quick {
		return roomCheck(res)
	}
	return nil
}

// roomCheck is the quick run's check, on every run: with the non-reading
// sessions, p99 under 250 ms; nothing lost and no reading session ended;
// every non-reading session closed with slow_reader where the server's
// send buffer is small, and none closed otherwise than with slow_reader
// where it is the kernel's (whose megabytes a short run may not fill).
func roomCheck(r *RoomResult) error {
	var errs []error
	for _, c := range r.Cases {
		for i, run := range c.Runs {
			if c.Slow > 0 && run.P99ms >= 250 {
				errs = append(errs, fmt.Errorf("room (%s), run %d: p99 broadcast latency %.1f ms (limit 250 ms)", c.Name, i+1, run.P99ms))
			}
			if run.Lost != 0 {
				errs = append(errs, fmt.Errorf("room (%s), run %d: %d broadcasts never reached a reading session", c.Name, i+1, run.Lost))
			}
			for _, e := range run.SlowEnds {
				if e.Code != protocol.CodeSlowReader.CloseCode() && (c.SndBuf > 0 || e.Code != 0 || e.Err != "") {
					errs = append(errs, fmt.Errorf("room (%s), run %d: a non-reading session ended with %s, want slow_reader (%d)",
						c.Name, i+1, slowEndText(e), protocol.CodeSlowReader.CloseCode()))
				}
			}
		}
		if len(c.ReaderEnds) > 0 {
			errs = append(errs, fmt.Errorf("room (%s): reading sessions ended during the runs: %v", c.Name, c.ReaderEnds))
		}
	}
	return errors.Join(errs...)
}

// roomRun is one run of the room with slow non-reading sessions. It
// returns every latency (a broadcast never received counts as an hour),
// and how many reading sessions ended early, by how.
func (b *bench) roomRun(rep, ci int, rc *RoomCase) (*RoomRun, []time.Duration, map[string]int, error) {
	ro, slow := b.o.room, rc.Slow
	s, err := b.e.startApp(fmt.Sprintf("room-%d-%d", rep, ci), func(c *childConfig) { c.App, c.SndBuf = "room", rc.SndBuf })
	if err != nil {
		return nil, nil, nil, err
	}
	defer s.stop()
	pc, err := b.e.protoClient(keys.ES256)
	if err != nil {
		return nil, nil, nil, err
	}
	u := wsURL(s.ready.WS, "/ws", false)
	epoch := time.Now()
	id := uint64(epoch.UnixNano()) // the run's broadcasts carry its identity

	readers := make([]*roomReader, ro.readers)
	stuck := make([]*rawConn, slow)
	defer func() {
		for _, r := range readers {
			if r != nil {
				r.c.close()
			}
		}
		for _, c := range stuck {
			if c != nil {
				c.close()
			}
		}
	}()
	fast, small := rcvbufDialer(b.src, 0), rcvbufDialer(b.src, ro.rcvbuf)
	dial := func(d *websocket.Dialer) (*rawConn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return dialRaw(ctx, d, u, pc)
	}
	for i := range readers {
		c, err := dial(fast)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("room: opening a reading session: %w", err)
		}
		r := &roomReader{c: c, seen: map[uint64]bool{}}
		readers[i] = r
		go func() {
			c.serveWith(func(m []byte) {
				if len(m) < 24 || binary.BigEndian.Uint64(m) != id {
					r.bad.Add(1)
					return
				}
				seq := binary.BigEndian.Uint64(m[8:])
				d := time.Since(epoch) - time.Duration(binary.BigEndian.Uint64(m[16:]))
				r.mu.Lock()
				if !r.seen[seq] {
					r.seen[seq] = true
					r.lat = append(r.lat, d)
				}
				r.mu.Unlock()
			})
			if !c.closing.Load() {
				r.how = closeKind(c.err)
				r.end.Store(true)
			}
		}()
	}
	for i := range stuck {
		c, err := dial(small)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("room: opening a non-reading session: %w", err)
		}
		stuck[i] = c
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := s.stats()
		if err != nil {
			return nil, nil, nil, err
		}
		if int(st["sessions"]) == ro.readers+slow {
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, nil, fmt.Errorf("room: %v sessions in the room, want %d", st["sessions"], ro.readers+slow)
		}
	}

	// readers[0] broadcasts every ro.every for ro.dur.
	sender := readers[0].c
	msg := make([]byte, ro.size)
	binary.BigEndian.PutUint64(msg, id)
	first := time.Now()
	t := time.NewTicker(ro.every)
	var sent int64
	for n := int64(ro.dur / ro.every); sent < n; sent++ {
		binary.BigEndian.PutUint64(msg[8:], uint64(sent))
		binary.BigEndian.PutUint64(msg[16:], uint64(time.Since(epoch)))
		sender.wmu.Lock()
		sender.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		err := sender.ws.WriteMessage(websocket.BinaryMessage, msg)
		sender.wmu.Unlock()
		if err != nil {
			t.Stop()
			return nil, nil, nil, fmt.Errorf("room: broadcast %d: %w", sent, err)
		}
		<-t.C
	}
	t.Stop()

	// Wait for the readers to receive everything, and for the non-reading
	// sessions' handlers to end.
	sids := map[string]int{}
	for i, c := range stuck {
		sids[c.sess.Load().SocketID] = i
	}
	var rep1 *appReport
	for deadline := time.Now().Add(ro.settle); ; time.Sleep(20 * time.Millisecond) {
		done := true
		for _, r := range readers {
			r.mu.Lock()
			got := len(r.lat)
			r.mu.Unlock()
			done = done && (got == int(sent) || r.end.Load())
		}
		if rep1, err = appOf(s); err != nil {
			return nil, nil, nil, err
		}
		ended := 0
		for _, e := range rep1.Ends {
			if _, ok := sids[e.SocketID]; ok {
				ended++
			}
		}
		if (done && ended == slow) || time.Now().After(deadline) {
			break
		}
	}

	run := &RoomRun{Sent: sent}
	if rep1.Room != nil {
		run.SendErrors = rep1.Room.SendErrors
	}
	var lat []time.Duration
	ends := map[string]int{}
	for _, r := range readers {
		r.mu.Lock()
		lat = append(lat, r.lat...)
		for range int(sent) - len(r.lat) {
			lat = append(lat, time.Hour)
			run.Lost++
		}
		r.mu.Unlock()
		if r.end.Load() {
			ends[r.how]++
		}
	}
	sortDurations(lat)
	run.P50ms, run.P99ms, run.MaxMs = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1])
	sec := func(ns int64) float64 {
		if ns == 0 {
			return 0
		}
		return time.Duration(ns - first.UnixNano()).Seconds()
	}
	run.SlowEnds = make([]SlowEnd, slow)
	for _, e := range rep1.Ends {
		if i, ok := sids[e.SocketID]; ok {
			run.SlowEnds[i] = SlowEnd{Code: e.Code, Err: e.Err, DecidedS: sec(e.FailedNs), HandlerS: sec(e.AtNs)}
		}
	}
	return run, lat, ends, nil
}

func slowEndText(e SlowEnd) string {
	switch {
	case e.Code != 0:
		return fmt.Sprintf("close %d", e.Code)
	case e.Err != "":
		return e.Err
	}
	return "still open"
}

func slowEndsText(es []SlowEnd) string {
	if len(es) == 0 {
		return "none"
	}
	out := ""
	for i, e := range es {
		if i > 0 {
			out += "; "
		}
		if e.HandlerS == 0 {
			out += slowEndText(e)
			continue
		}
		out += fmt.Sprintf("%s, Sends failing from %.2f s, its handler's Read ended %.2f s after the first broadcast",
			slowEndText(e), e.DecidedS, e.HandlerS)
	}
	return out
}

package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/keys"
)

// frameConn is an open socket the frame load echoes messages on. send is
// called from one goroutine and recv from another.
//
// recv returns when ctx ends (wsproof) or after interrupt (gorilla, whose
// reads take no context; the socket is unusable afterwards).
type frameConn interface {
	send(p []byte) error
	recv(ctx context.Context) ([]byte, error)
	interrupt()
	close()
}

type wsproofFC struct{ c *client.Conn }

func (f wsproofFC) send(p []byte) error                      { return f.c.Write(context.Background(), p) }
func (f wsproofFC) recv(ctx context.Context) ([]byte, error) { return f.c.Read(ctx) }
func (f wsproofFC) interrupt()                               {}
func (f wsproofFC) close()                                   { f.c.Close() }

type plainFC struct{ ws *websocket.Conn }

func (f plainFC) send(p []byte) error { return f.ws.WriteMessage(websocket.BinaryMessage, p) }
func (f plainFC) recv(ctx context.Context) ([]byte, error) {
	_, m, err := f.ws.ReadMessage()
	return m, err
}
func (f plainFC) interrupt() { f.ws.UnderlyingConn().SetReadDeadline(time.Unix(1, 0)) }
func (f plainFC) close()     { closeGorilla(f.ws) }

// finSeq marks the last message of a run: once its echo is back, every
// earlier one has been echoed or lost (the echo keeps order).
const finSeq = math.MaxUint64

// openFrameConns opens n sockets of one system on server s.
func (b *bench) openFrameConns(s *child, system string, n int) ([]frameConn, error) {
	conns := make([]frameConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	plainD := gorillaDialer(nil, nil, nil)
	cfg := b.e.clientConfig(keys.ES256, false)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if system == "wsproof" {
				c, err := client.Dial(ctx, wsURL(s.ready.WS, "/ws", false), cfg)
				conns[i], errs[i] = wsproofFC{c}, err
				return
			}
			ws, _, err := plainD.DialContext(ctx, wsURL(s.ready.WS, "/plain", false), nil)
			conns[i], errs[i] = plainFC{ws}, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for i, c := range conns {
			if errs[i] == nil {
				c.close()
			}
		}
		return nil, fmt.Errorf("opening %s sockets: %w", system, err)
	}
	return conns, nil
}

// frameRun is the outcome of one frame cell.
type frameRun struct {
	FrRun
	sent, received, errors int64
	lat                    []time.Duration
	broken                 bool // the drain timed out: the sockets must not be reused
}

// runFrames echoes messages of size bytes on every conn, keeping inflight
// messages outstanding per conn, for warm then dur; only the dur window is
// measured. Each message carries its sequence number and send time; the
// echo must return them in order. It then stops the writers, sends each
// conn's fin message and waits (at most drain) for the echoes: what did not
// come back is lost.
func (b *bench) runFrames(s *child, conns []frameConn, size, inflight int, warm, dur time.Duration) (*frameRun, error) {
	const maxPerConn = 10_000_000 // the count bound of every writer
	epoch := time.Now()
	var measuring atomic.Bool
	stop := make(chan struct{})
	type state struct {
		sent, received, errors, outOfOrder atomic.Int64
		lat                                []time.Duration
		done                               chan struct{}
	}
	st := make([]*state, len(conns))
	var wg sync.WaitGroup
	drainCtx, cancelDrain := context.WithCancel(context.Background())
	defer cancelDrain()
	for i, fc := range conns {
		cs := &state{done: make(chan struct{})}
		st[i] = cs
		sem := make(chan struct{}, inflight)
		wg.Add(1)
		go func() { // writer
			defer wg.Done()
			buf := make([]byte, size)
			for seq := uint64(0); seq < maxPerConn; seq++ {
				select {
				case sem <- struct{}{}:
				case <-stop:
					seq = maxPerConn
					continue
				}
				binary.BigEndian.PutUint64(buf[0:], seq)
				binary.BigEndian.PutUint64(buf[8:], uint64(time.Since(epoch)))
				if err := fc.send(buf); err != nil {
					cs.errors.Add(1)
					return
				}
				cs.sent.Add(1)
			}
			binary.BigEndian.PutUint64(buf[0:], finSeq)
			if err := fc.send(buf); err != nil {
				cs.errors.Add(1)
			}
		}()
		go func() { // reader
			defer close(cs.done)
			next := uint64(0)
			for {
				m, err := fc.recv(drainCtx)
				if err != nil {
					if drainCtx.Err() == nil {
						cs.errors.Add(1)
					}
					return
				}
				if len(m) != size {
					cs.errors.Add(1)
					return
				}
				seq := binary.BigEndian.Uint64(m[0:])
				if seq == finSeq {
					return
				}
				if seq != next {
					cs.outOfOrder.Add(1)
				}
				next = seq + 1
				if measuring.Load() {
					sentAt := time.Duration(binary.BigEndian.Uint64(m[8:]))
					cs.lat = append(cs.lat, time.Since(epoch)-sentAt)
				}
				cs.received.Add(1)
				select {
				case <-sem:
				default:
				}
			}
		}()
	}
	out0 := &frameRun{}
	received := func() int64 {
		var n int64
		for _, cs := range st {
			n += cs.received.Load()
		}
		return n
	}
	time.Sleep(warm)
	s0, err := s.cpu()
	if err != nil {
		close(stop)
		return nil, err
	}
	c0, r0, t0 := selfCPU(), received(), time.Now()
	measuring.Store(true)
	time.Sleep(dur)
	measuring.Store(false)
	c1, r1, t1 := selfCPU(), received(), time.Now()
	s1, err := s.cpu()
	close(stop)
	wg.Wait()
	drained := make(chan struct{})
	go func() {
		for _, cs := range st {
			<-cs.done
		}
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(b.o.drain):
		cancelDrain()
		for _, fc := range conns {
			fc.interrupt()
		}
		<-drained
		out0.broken = true
	}
	if err != nil {
		return nil, err
	}
	out := out0
	for _, cs := range st {
		out.sent += cs.sent.Load()
		out.received += cs.received.Load()
		out.errors += cs.errors.Load() + cs.outOfOrder.Load()
		out.lat = append(out.lat, cs.lat...)
	}
	sortDurations(out.lat)
	n := float64(r1 - r0)
	if n > 0 {
		out.Rate = n / t1.Sub(t0).Seconds()
		out.CPUus = (s1 - s0) / n
		out.ClientUs = (c1 - c0) / n
	}
	out.P50us = us(percentile(out.lat, 0.50))
	out.P99us = us(percentile(out.lat, 0.99))
	out.Lost = out.sent - out.received
	return out, nil
}

// frames measures echo throughput and latency on authenticated sockets
// (package client against server.Server) and plain gorilla sockets, on the
// same server process, for every size and in-flight depth.
func (b *bench) frames() error {
	o := b.o
	type key struct {
		system         string
		size, inflight int
	}
	cells := map[key]*FrameCell{}
	var order []key
	for _, size := range o.sizes {
		for _, inflight := range o.inflights {
			for _, system := range []string{"plain", "wsproof"} {
				k := key{system, size, inflight}
				cells[k] = &FrameCell{System: system, Size: size, Inflight: inflight, Conns: o.frameConns}
				order = append(order, k)
			}
		}
	}
	for rep := range o.runs {
		for _, system := range []string{"plain", "wsproof"} {
			conns, err := b.openFrameConns(b.srv, system, o.frameConns)
			if err != nil {
				return err
			}
			for _, k := range order {
				if k.system != system {
					continue
				}
				r, err := b.runFrames(b.srv, conns, k.size, k.inflight, o.frameWarm, o.frameDur)
				if err != nil {
					return err
				}
				c := cells[k]
				c.Runs = append(c.Runs, r.FrRun)
				c.Sent += r.sent
				c.Received += r.received
				c.Lost += r.Lost
				c.Errors += r.errors
				c.lat = append(c.lat, r.lat...)
				if r.broken || r.errors > 0 {
					for _, c := range conns {
						c.close()
					}
					if conns, err = b.openFrameConns(b.srv, system, o.frameConns); err != nil {
						return err
					}
				}
				b.logf("frames %d/%d %-7s %4d B x%-2d %8.0f msg/s p50 %6.0f µs p99 %6.0f µs server %5.1f µs/msg client %5.1f µs/msg lost %d err %d",
					rep+1, o.runs, system, k.size, k.inflight, r.Rate, r.P50us, r.P99us, r.CPUus, r.ClientUs, r.Lost, r.errors)
			}
			for _, c := range conns {
				c.close()
			}
		}
	}
	for _, k := range order {
		c := cells[k]
		c.Rate = median(pick(c.Runs, func(r FrRun) float64 { return r.Rate }))
		c.P50us = median(pick(c.Runs, func(r FrRun) float64 { return r.P50us }))
		c.P99us = median(pick(c.Runs, func(r FrRun) float64 { return r.P99us }))
		c.CPUus = median(pick(c.Runs, func(r FrRun) float64 { return r.CPUus }))
		c.ClientUs = median(pick(c.Runs, func(r FrRun) float64 { return r.ClientUs }))
		sortDurations(c.lat)
		c.CDF = make([]float64, 0, 101)
		for _, v := range cdf(c.lat) {
			c.CDF = append(c.CDF, v*1000) // µs
		}
		c.lat = nil
		b.res.Frames = append(b.res.Frames, c)
	}
	return nil
}

// refresh runs the frame load while every session refreshes: a server
// child with a short token lifetime, 64-byte messages, the deepest
// in-flight depth. Lost frames must be zero. The same cell on plain gorilla
// sockets, on the same child and in the same repetition, is the baseline.
func (b *bench) refresh() error {
	o := b.o
	s, err := b.e.startServer("refresh", o.refreshLifetime, o.refreshBefore)
	if err != nil {
		return err
	}
	defer s.stop()
	size, inflight := 64, o.inflights[len(o.inflights)-1]
	res := &RefreshResult{TokenLifetime: o.refreshLifetime.String(), RefreshBefore: o.refreshBefore.String(),
		Duration: o.refreshDur.String(), Conns: o.frameConns, Size: size, Inflight: inflight}
	var plainRates []float64
	for rep := range o.runs {
		pc, err := b.openFrameConns(s, "plain", o.frameConns)
		if err != nil {
			return err
		}
		pr, err := b.runFrames(s, pc, size, inflight, o.frameWarm, o.frameDur)
		for _, c := range pc {
			c.close()
		}
		if err != nil {
			return err
		}
		plainRates = append(plainRates, pr.Rate)

		conns, err := b.openFrameConns(s, "wsproof", o.frameConns)
		if err != nil {
			return err
		}
		st0, err := s.stats()
		if err != nil {
			return err
		}
		r, err := b.runFrames(s, conns, size, inflight, o.frameWarm, o.refreshDur)
		if err != nil {
			return err
		}
		st1, err := s.stats()
		if err != nil {
			return err
		}
		for _, c := range conns {
			c.close()
		}
		ok := int(st1["wsproof_refreshes_total,result=ok"] - st0["wsproof_refreshes_total,result=ok"])
		failed := 0
		for k, v := range st1 {
			if strings.HasPrefix(k, "wsproof_refreshes_total,result=") && !strings.HasSuffix(k, "=ok") {
				failed += int(v - st0[k])
			}
		}
		res.Refreshes += ok
		res.RefreshFails += failed
		res.Sent += r.sent
		res.Received += r.received
		res.Lost += r.Lost
		res.Errors += r.errors
		res.Runs = append(res.Runs, r.FrRun)
		b.logf("refresh %d/%d %8.0f msg/s (plain %8.0f) p99 %6.0f µs refreshes %d failed %d sent %d lost %d err %d",
			rep+1, o.runs, r.Rate, pr.Rate, r.P99us, ok, failed, r.sent, r.Lost, r.errors)
	}
	res.Rate = median(pick(res.Runs, func(r FrRun) float64 { return r.Rate }))
	res.P99us = median(pick(res.Runs, func(r FrRun) float64 { return r.P99us }))
	res.PlainRate = median(plainRates)
	b.res.Refresh = res
	return nil
}

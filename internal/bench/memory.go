package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// idleConn is an open socket the memory and scale runs hold.
type idleConn interface {
	close()
	failed() error
}

type plainIdle struct {
	ws   *websocket.Conn
	done chan struct{}
	err  error
	shut atomic.Bool
}

func (p *plainIdle) close() { p.shut.Store(true); p.ws.Close() }
func (p *plainIdle) failed() error {
	select {
	case <-p.done:
		if p.shut.Load() {
			return nil
		}
		return fmt.Errorf("socket ended: %w", p.err)
	default:
		return nil
	}
}

// opener opens one idle socket of a system from the source pool and
// returns it with its handshake latency.
func (b *bench) opener(s *child, system string) (func(ctx context.Context) (idleConn, time.Duration, error), error) {
	if system == "plain" {
		d := gorillaDialer(nil, b.src, nil)
		u := wsURL(s.ready.WS, "/plain", false)
		return func(ctx context.Context) (idleConn, time.Duration, error) {
			t0 := time.Now()
			ws, _, err := d.DialContext(ctx, u, nil)
			if err != nil {
				return nil, 0, err
			}
			lat := time.Since(t0)
			p := &plainIdle{ws: ws, done: make(chan struct{})}
			go func() {
				defer close(p.done)
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						p.err = err
						return
					}
				}
			}()
			return p, lat, nil
		}, nil
	}
	pc, err := b.e.protoClient(keys.ES256)
	if err != nil {
		return nil, err
	}
	d := gorillaDialer(nil, b.src, []string{protocol.Subprotocol})
	u := wsURL(s.ready.WS, "/ws", false)
	return func(ctx context.Context) (idleConn, time.Duration, error) {
		t0 := time.Now()
		c, err := dialRaw(ctx, d, u, pc)
		if err != nil {
			return nil, 0, err
		}
		lat := time.Since(t0)
		go c.serve()
		return c, lat, nil
	}, nil
}

// openMany opens n sockets with at most conc dials at a time.
func openMany(n, conc int, open func(ctx context.Context) (idleConn, time.Duration, error)) ([]idleConn, map[string]int) {
	conns := make([]idleConn, n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fails = map[string]int{}
	)
	sem := make(chan struct{}, conc)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, _, err := open(ctx)
			if err != nil {
				mu.Lock()
				fails[errKind(err)]++
				mu.Unlock()
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out, fails
}

func closeAll(conns []idleConn) {
	for _, c := range conns {
		c.close()
	}
}

// memRun is one memory measurement of one system.
type memRun struct {
	perConn, heapPer, stackPer, gorPer, baseMiB float64
	points                                      [][]float64
	failures                                    int
}

// memoryRun starts a fresh server child, opens n idle sockets in four
// steps and reads the child's RSS after a forced GC at each step. The
// per-connection figure is the RSS growth at n divided by n.
func (b *bench) memoryRun(system string, n int, profileDir string) (*memRun, error) {
	o := b.o
	s, err := b.e.startServer("mem-"+system, 0, 0)
	if err != nil {
		return nil, err
	}
	var conns []idleConn
	defer func() {
		s.stop()
		closeAll(conns)
	}()
	open, err := b.opener(s, system)
	if err != nil {
		return nil, err
	}
	// Warm up the code paths and pools, then take the baseline.
	warm, _ := openMany(32, 16, open)
	closeAll(warm)
	time.Sleep(300 * time.Millisecond)
	measure := func() (rss float64, st map[string]float64, err error) {
		time.Sleep(o.memSettle)
		if err := s.gc(); err != nil {
			return 0, nil, err
		}
		time.Sleep(100 * time.Millisecond)
		if rss, _, err = s.rss(); err != nil {
			return 0, nil, err
		}
		st, err = s.stats()
		return rss, st, err
	}
	rss0, st0, err := measure()
	if err != nil {
		return nil, err
	}
	r := &memRun{baseMiB: rss0 / 1024, points: [][]float64{{0, 0}}}
	var (
		rss float64
		st  map[string]float64
	)
	const steps = 4
	for k := 1; k <= steps; k++ {
		target := n * k / steps
		more, fails := openMany(target-len(conns)-r.failures, 32, open)
		conns = append(conns, more...)
		for _, v := range fails {
			r.failures += v
		}
		if rss, st, err = measure(); err != nil {
			return nil, err
		}
		r.points = append(r.points, []float64{float64(len(conns)), (rss - rss0) / 1024})
	}
	for _, c := range conns {
		if err := c.failed(); err != nil {
			r.failures++
		}
	}
	if m := float64(len(conns)); m > 0 {
		r.perConn = (rss - rss0) / m
		r.heapPer = (st["heap_inuse"] - st0["heap_inuse"]) / 1024 / m
		r.stackPer = (st["stack_inuse"] - st0["stack_inuse"]) / 1024 / m
		r.gorPer = (st["goroutines"] - st0["goroutines"]) / m
	}
	if profileDir != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, kind := range []string{"heap", "goroutine"} {
			f := filepath.Join(profileDir, fmt.Sprintf("memory-%s-%s.pprof", system, kind))
			if _, err := s.profile(ctx, kind, 0, f); err != nil {
				b.logf("profile %s: %v", f, err)
				continue
			}
			pprofTop(f, kind == "heap") // the .txt beside it, from this run even when the target passes
		}
	}
	return r, nil
}

// memory compares the server RSS of idle authenticated sockets with idle
// plain gorilla sockets, o.runs times each, alternating.
func (b *bench) memory() error {
	o := b.o
	var runs = map[string][]*memRun{}
	for rep := range o.runs {
		for _, system := range []string{"plain", "wsproof"} {
			prof := ""
			if rep == o.runs-1 && b.profDir != "" {
				prof = b.profDir
			}
			r, err := b.memoryRun(system, o.memN, prof)
			if err != nil {
				return err
			}
			runs[system] = append(runs[system], r)
			b.logf("memory %d/%d %-7s n=%d %6.1f KiB/conn (heap %5.1f, stacks %5.1f KiB, %.1f goroutines) base %.1f MiB failures %d",
				rep+1, o.runs, system, o.memN, r.perConn, r.heapPer, r.stackPer, r.gorPer, r.baseMiB, r.failures)
		}
	}
	for _, system := range []string{"plain", "wsproof"} {
		rs := runs[system]
		per := pick(rs, func(r *memRun) float64 { return r.perConn })
		mid := rs[medianIndex(per)]
		m := &MemResult{System: system, N: o.memN, PerConnKiB: median(per), Runs: per,
			HeapPerConnKiB: median(pick(rs, func(r *memRun) float64 { return r.heapPer })),
			StackPerConnKB: median(pick(rs, func(r *memRun) float64 { return r.stackPer })),
			GoroutinesPer:  median(pick(rs, func(r *memRun) float64 { return r.gorPer })),
			BaseRSSMiB:     median(pick(rs, func(r *memRun) float64 { return r.baseMiB })),
			Points:         mid.points}
		for _, r := range rs {
			m.Failures += r.failures
		}
		b.res.Memory = append(b.res.Memory, m)
	}
	return nil
}

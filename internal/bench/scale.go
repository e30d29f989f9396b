package bench

import (
	"context"
	"strings"
	"sync"
	"time"
)

// scaleRun opens o.scaleN authenticated sessions at a steady arrival rate
// on a fresh server child whose tokens are short-lived, so that refreshes
// run during the arrivals and the hold that follows; then checks that every
// session is still open. Every dial failure and every session that ended
// early is counted.
func (b *bench) scaleRun() (*ScaleRun, []time.Duration, map[string]int, error) {
	o := b.o
	s, err := b.e.startServer("scale", o.scaleLifetime, o.scaleLifetime/2)
	if err != nil {
		return nil, nil, nil, err
	}
	var conns []idleConn
	defer func() {
		s.stop()
		closeAll(conns)
	}()
	open, err := b.opener(s, "wsproof")
	if err != nil {
		return nil, nil, nil, err
	}
	rss0, _, err := s.rss()
	if err != nil {
		return nil, nil, nil, err
	}
	st0, err := s.stats()
	if err != nil {
		return nil, nil, nil, err
	}
	cpu0, err := s.cpu()
	if err != nil {
		return nil, nil, nil, err
	}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		lats  []time.Duration
		fails = map[string]int{}
	)
	const maxInFlight = 2048 // arrivals wait when this many dials are pending
	sem := make(chan struct{}, maxInFlight)
	interval := time.Duration(float64(time.Second) / o.scaleRate)
	t0 := time.Now()
	for i := range o.scaleN {
		if d := time.Until(t0.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, lat, err := open(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fails["dial: "+errKind(err)]++
				return
			}
			lats = append(lats, lat)
			conns = append(conns, c)
		}()
	}
	arrivals := time.Since(t0)
	wg.Wait()
	time.Sleep(o.scaleHold)
	for _, c := range conns {
		if err := c.failed(); err != nil {
			fails["session: "+errKind(err)]++
		}
	}
	st1, err := s.stats()
	if err != nil {
		return nil, nil, nil, err
	}
	cpu1, err := s.cpu()
	if err != nil {
		return nil, nil, nil, err
	}
	elapsed := time.Since(t0)
	rss, hwm, err := s.rss()
	if err != nil {
		return nil, nil, nil, err
	}
	for k, v := range st1 {
		// Server-side refusals and refresh failures, by spec code.
		if strings.HasPrefix(k, "wsproof_handshakes_total,outcome=refused") || (strings.HasPrefix(k, "wsproof_refreshes_total,result=") && !strings.HasSuffix(k, "=ok")) {
			if d := int(v - st0[k]); d > 0 {
				fails["server: "+strings.TrimPrefix(k, "wsproof_")] += d
			}
		}
	}
	sortDurations(lats)
	r := &ScaleRun{
		Opened: len(conns), Achieved: float64(o.scaleN) / arrivals.Seconds(),
		P50ms: ms(percentile(lats, 0.5)), P99ms: ms(percentile(lats, 0.99)), MaxMs: ms(percentile(lats, 1)),
		PeakRSSMiB: hwm / 1024, CPUSeconds: (cpu1 - cpu0) / 1e6, Seconds: elapsed.Seconds(),
		Refreshes:   int(st1["wsproof_refreshes_total,result=ok"] - st0["wsproof_refreshes_total,result=ok"]),
		SessionsEnd: int(st1["sessions"]),
	}
	r.CPUCores = r.CPUSeconds / elapsed.Seconds()
	for _, v := range fails {
		r.Failures += v
	}
	if r.Opened > 0 {
		r.RSSPerSessKiB = (rss - rss0) / float64(r.Opened)
	}
	return r, lats, fails, nil
}

// scale repeats the scale run o.scaleRuns times.
func (b *bench) scale() error {
	o := b.o
	res := &ScaleResult{N: o.scaleN, ArrivalRate: o.scaleRate, Hold: o.scaleHold.String(), TokenLife: o.scaleLifetime.String(),
		FailureKinds: map[string]int{}}
	var all []time.Duration
	for rep := range o.scaleRuns {
		r, lats, fails, err := b.scaleRun()
		if err != nil {
			return err
		}
		res.Runs = append(res.Runs, *r)
		all = append(all, lats...)
		for k, v := range fails {
			res.FailureKinds[k] += v
		}
		b.logf("scale %d/%d opened %d/%d at %.0f/s p50 %.1f ms p99 %.1f ms max %.1f ms peak RSS %.0f MiB server CPU %.1f s (%.2f cores) refreshes %d sessions at end %d failures %d",
			rep+1, o.scaleRuns, r.Opened, o.scaleN, r.Achieved, r.P50ms, r.P99ms, r.MaxMs, r.PeakRSSMiB, r.CPUSeconds, r.CPUCores, r.Refreshes, r.SessionsEnd, r.Failures)
	}
	rs := res.Runs
	res.Opened = int(median(pick(rs, func(r ScaleRun) float64 { return float64(r.Opened) })))
	res.Achieved = median(pick(rs, func(r ScaleRun) float64 { return r.Achieved }))
	res.P50ms = median(pick(rs, func(r ScaleRun) float64 { return r.P50ms }))
	res.P99ms = median(pick(rs, func(r ScaleRun) float64 { return r.P99ms }))
	res.MaxMs = median(pick(rs, func(r ScaleRun) float64 { return r.MaxMs }))
	res.PeakRSSMiB = median(pick(rs, func(r ScaleRun) float64 { return r.PeakRSSMiB }))
	res.RSSPerSessKB = median(pick(rs, func(r ScaleRun) float64 { return r.RSSPerSessKiB }))
	res.CPUSeconds = median(pick(rs, func(r ScaleRun) float64 { return r.CPUSeconds }))
	res.CPUCores = median(pick(rs, func(r ScaleRun) float64 { return r.CPUCores }))
	res.Refreshes = int(median(pick(rs, func(r ScaleRun) float64 { return float64(r.Refreshes) })))
	res.SessionsEnd = int(median(pick(rs, func(r ScaleRun) float64 { return float64(r.SessionsEnd) })))
	for _, r := range rs {
		res.Failures += r.Failures
	}
	if len(res.FailureKinds) == 0 {
		res.FailureKinds = nil
	}
	sortDurations(all)
	res.CDF = cdf(all)
	b.res.Scale = res
	return nil
}

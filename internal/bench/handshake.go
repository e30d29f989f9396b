package bench

import (
	"crypto/ecdsa"
	"crypto/tls"
	"slices"
	"sync/atomic"
	"time"

	"github.com/wsproof/wsproof/internal/benchfloor"
	"github.com/wsproof/wsproof/keys"
)

// hsPlan is one handshake cell and how to drive it.
type hsPlan struct {
	cell   *HSCell
	server *child
	op     op

	connects, resumed *atomic.Int64 // TLS connects, and those that resumed a session; nil if not counted
}

// handshakes measures every handshake cell, repeating the whole matrix
// o.runs times (interleaved, so that a noisy minute hits every cell a
// little rather than one cell a lot), with the floors measured at the start
// of each repetition.
func (b *bench) handshakes() error {
	o := b.o
	var plans []*hsPlan
	for _, tlsOn := range o.tlsModes {
		host := b.srv.ready.WS
		if tlsOn {
			host = b.srv.ready.WSS
		}
		var tlsConf = b.e.tlsConfig()
		if !tlsOn {
			tlsConf = nil
		}
		plainD := gorillaDialer(tlsConf, nil, nil)
		for _, conc := range o.concs {
			plans = append(plans, &hsPlan{cell: &HSCell{System: "plain", TLS: tlsOn, Conc: conc}, server: b.srv,
				op: plainOp(wsURL(host, "/plain", tlsOn), plainD)})
			for _, alg := range o.algs {
				cfg := b.e.clientConfig(alg, tlsOn)
				if tlsOn {
					// A full TLS handshake on every connect, as the plain
					// gorilla cell has: package client would resume.
					cfg.TLSConfig.ClientSessionCache = noResumption{}
				}
				plans = append(plans, &hsPlan{cell: &HSCell{System: "wsproof", Alg: string(alg), TLS: tlsOn, Conc: conc}, server: b.srv,
					op: wsproofOp(wsURL(host, "/ws", tlsOn), cfg)})
			}
			if tlsOn && slices.Contains(o.algs, keys.ES256) {
				// Reconnects: the client's own session cache, as a device
				// has it, so every connect after the first resumes; the
				// cell counts the connects that did.
				p := &hsPlan{cell: &HSCell{System: "wsproof", Alg: string(keys.ES256), TLS: true, Resumed: true, Conc: conc},
					server: b.srv, connects: new(atomic.Int64), resumed: new(atomic.Int64)}
				cfg := b.e.clientConfig(keys.ES256, true)
				cfg.TLSConfig.VerifyConnection = func(cs tls.ConnectionState) error {
					p.connects.Add(1)
					if cs.DidResume {
						p.resumed.Add(1)
					}
					return nil
				}
				p.op = wsproofOp(wsURL(host, "/ws", true), cfg)
				plans = append(plans, p)
			}
			if b.cent != nil && !tlsOn {
				d := gorillaDialer(nil, nil, nil)
				u := wsURL(b.cent.ready.WS, "/connection/websocket", false)
				for _, a := range []string{"anon", "HS256", "ES256"} {
					plans = append(plans, &hsPlan{cell: &HSCell{System: "centrifuge", Alg: a, Conc: conc}, server: b.cent,
						op: centrifugeOp(u, d, b.e.jwts[a])})
				}
			}
		}
	}
	floorRuns := map[string][]float64{}
	floorParts := map[string]string{}
	runs := make([][]HSRun, len(plans))
	for rep := range o.runs {
		if err := b.floors(floorRuns, floorParts); err != nil {
			return err
		}
		for i, p := range plans {
			r, lat, fails, err := b.measureHS(p)
			if err != nil {
				return err
			}
			runs[i] = append(runs[i], r)
			p.cell.lat = append(p.cell.lat, lat...)
			if len(fails) > 0 && p.cell.Failures == nil {
				p.cell.Failures = map[string]int{}
			}
			for k, v := range fails {
				p.cell.Failures[k] += v
			}
			b.logf("handshake %d/%d %-24s tls=%-5v c=%-3d %7.0f/s p50 %6.2f ms p99 %6.2f ms server %6.0f µs client %6.0f µs fail %d",
				rep+1, o.runs, p.cell.name(), p.cell.TLS, p.cell.Conc, r.Rate, r.P50ms, r.P99ms, r.CPUus, r.ClientUs, r.Failures)
		}
	}
	for _, name := range floorOrder(o.algs) {
		if v, ok := floorRuns[name]; ok {
			b.res.Floors = append(b.res.Floors, Floor{Name: name, Parts: floorParts[name], CPUus: median(v), Runs: v})
		}
	}
	for i, p := range plans {
		c := p.cell
		c.Runs = runs[i]
		c.Rate = median(pick(c.Runs, func(r HSRun) float64 { return r.Rate }))
		c.P50ms = median(pick(c.Runs, func(r HSRun) float64 { return r.P50ms }))
		c.P99ms = median(pick(c.Runs, func(r HSRun) float64 { return r.P99ms }))
		c.CPUus = median(pick(c.Runs, func(r HSRun) float64 { return r.CPUus }))
		c.ClientUs = median(pick(c.Runs, func(r HSRun) float64 { return r.ClientUs }))
		for _, r := range c.Runs {
			c.Ops += r.Ops
		}
		if p.connects != nil && p.connects.Load() > 0 {
			c.ResumedShare = float64(p.resumed.Load()) / float64(p.connects.Load())
		}
		sortDurations(c.lat)
		c.CDF = cdf(c.lat)
		b.res.Handshakes = append(b.res.Handshakes, c)
	}
	return nil
}

func floorOrder(algs []keys.Algorithm) []string {
	var out []string
	for _, a := range algs {
		out = append(out, "wsproof "+string(a))
	}
	for _, a := range algs {
		out = append(out, clientFloorName(a))
	}
	return append(out, "JWT HS256", "JWT ES256")
}

// clientFloorName names the floor of a client of alg.
func clientFloorName(alg keys.Algorithm) string { return "wsproof client " + string(alg) }

// floors measures every floor once and appends to runs.
func (b *bench) floors(runs map[string][]float64, parts map[string]string) error {
	serverKey := b.e.sk.Signing[0].Signer.(*ecdsa.PrivateKey)
	for _, alg := range b.o.algs {
		iters := b.o.floorIters
		d, err := floorWSProof(alg, serverKey, b.e.signers[alg], iters)
		if err != nil {
			return err
		}
		name := "wsproof " + string(alg)
		runs[name] = append(runs[name], us(d))
		parts[name] = benchfloor.ServerParts(alg)
		if d, err = floorClient(alg, serverKey, b.e.signers[alg], iters); err != nil {
			return err
		}
		name = clientFloorName(alg)
		runs[name] = append(runs[name], us(d))
		parts[name] = benchfloor.ClientParts(alg)
	}
	if b.cent != nil {
		for alg, key := range map[string]any{"HS256": b.e.hsSecret, "ES256": &b.e.esKey.PublicKey} {
			d, err := floorJWT(b.e.jwts[alg], key, b.o.floorIters*4)
			if err != nil {
				return err
			}
			name := "JWT " + alg
			runs[name] = append(runs[name], us(d))
			parts[name] = map[string]string{"HS256": "HMAC-SHA256 verify of the token", "ES256": "SHA-256 + P-256 verify of the token"}[alg]
		}
	}
	return nil
}

// measureHS runs one cell once: a short warm-up at the same concurrency,
// then the timed run between two readings of the server's CPU time.
func (b *bench) measureHS(p *hsPlan) (HSRun, []time.Duration, map[string]int, error) {
	o := b.o
	runOps(p.cell.Conc, o.hsWarm, o.hsMax, p.op)
	time.Sleep(o.settle)
	s0, err := p.server.cpu()
	if err != nil {
		return HSRun{}, nil, nil, err
	}
	c0 := selfCPU()
	r := runOps(p.cell.Conc, o.hsDur, o.hsMax, p.op)
	time.Sleep(o.settle)
	s1, err := p.server.cpu()
	if err != nil {
		return HSRun{}, nil, nil, err
	}
	c1 := selfCPU()
	run := HSRun{Ops: r.Ops, Failures: r.failures()}
	if r.Ops > 0 {
		run.Rate = float64(r.Ops) / r.Elapsed.Seconds()
		run.P50ms = ms(percentile(r.Lat, 0.50))
		run.P99ms = ms(percentile(r.Lat, 0.99))
		run.CPUus = (s1 - s0) / float64(r.Ops)
		run.ClientUs = (c1 - c0) / float64(r.Ops)
	}
	return run, r.Lat, r.Failures, nil
}

func sortDurations(s []time.Duration) { slices.Sort(s) }

func us(d time.Duration) float64 { return float64(d) / 1e3 }

// noResumption is a TLS session cache that keeps nothing: every connect
// makes a full TLS handshake.
type noResumption struct{}

func (noResumption) Get(string) (*tls.ClientSessionState, bool) { return nil, false }
func (noResumption) Put(string, *tls.ClientSessionState)        {}

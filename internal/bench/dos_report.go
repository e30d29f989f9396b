package bench

import (
	"fmt"
	"path/filepath"
	"strings"
)

// The markers of the denial-of-service block of the Markdown file; the
// rest of the file, including the other generated block, is kept.
const (
	mdDoSBegin = "<!-- wsproof-bench:dos:begin -->"
	mdDoSEnd   = "<!-- wsproof-bench:dos:end -->"
)

// dosMarkdown renders the denial-of-service tables. file is where they go,
// for the relative links to the plots and profiles.
func dosMarkdown(r *Results, file string) string {
	x := r.DoS
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	w("%s", runHeader(r, func(s string) bool { return s == "dos" }))
	w("**Attack.** %d idle unauthenticated sockets from %d addresses in 127.5.0.0/16 (each reads the challenge, never answers, and is re-opened as soon as the server closes it; one refused with 429 tries again after %s, jittered by ±50%%); "+
		"and a flood of bad handshakes by %d loops from %d addresses in 127.6.0.0/16, as fast as they go for the whole attack phase (at most %d attempts): each a complete upgrade whose response is bound to its challenge and signed by a registered ES256 key, with one bit of the signature flipped, so that the server signs a challenge and verifies a signature for every one it admits. "+
		"The attacker is a process of its own.\n\n",
		x.Idle, x.IdleAddrs, x.IdleRetry, x.FloodWorkers, x.FloodAddrs, x.FloodMax)
	w("**Legitimate load**, the same in the baseline and under attack: %.0f ES256 handshakes per second (open loop) from %d addresses in 127.4.0.0/16, each timed from the dial to the accept, then closed; and %d sessions opened before the baseline from 127.3.0.0/16, each echoing a numbered 64-byte frame every %s (a frame not echoed when the phase's final marker is, or within the drain bound, is lost). "+
		"**Phases**, on one server process: baseline %s (legitimate load only); the idle sockets start and ramp for %s; then the flood starts and the legitimate load runs again for %s. The server's RSS (VmRSS) is sampled every second; its halves are the two halves of the attack phase.\n\n",
		x.LegitRate, x.LegitAddrs, x.Sessions, x.FrameEvery, x.Baseline, x.Ramp, x.Attack)

	w("#### Server limits\n\n")
	t := &table{head: []string{"configuration", "MaxPending", "MaxPendingPerAddr", "HandshakeRate /s", "HandshakeRatePerAddr /s", "HandshakeTimeout", "differs from the defaults"}}
	lim := func(name string, l DoSLimits, note string) {
		t.add(name, fmt.Sprint(l.MaxPending), fmt.Sprint(l.MaxPendingPerAddr), f0(l.HandshakeRate), f0(l.HandshakeRatePerAddr), l.HandshakeTimeout, note)
	}
	lim("server package defaults", x.Defaults, "")
	for _, c := range x.Configs {
		note := c.Scaled
		if note == "" {
			note = "nothing"
		}
		lim(c.Name, c.Limits, note)
	}
	w("%s\n", t)

	if len(x.Targets) > 0 {
		w("#### Targets\n\n%s\n", targetTable(x.Targets))
	}

	for _, c := range x.Configs {
		b, a := c.Base, c.Attack
		w("#### %s: every figure beside its baseline\n\n", c.Name)
		w("Medians of the runs, except where a row says \"all runs\".\n\n")
		t := &table{head: []string{"figure", "baseline (no attack)", "under attack", "attack / baseline"}}
		row := func(name string, bv, av float64, format func(float64) string) {
			t.add(name, format(bv), format(av), rx(av, bv))
		}
		d := func(v float64) string { return fmt.Sprint(int64(v)) }
		row("legitimate handshakes attempted", float64(b.LegitAttempts), float64(a.LegitAttempts), d)
		row("legitimate handshakes completed", float64(b.LegitOK), float64(a.LegitOK), d)
		t.add("legitimate handshakes failed (all runs)", failText(b.LegitFailures), failText(a.LegitFailures), "")
		row("legitimate handshake p50 ms", b.P50ms, a.P50ms, f1)
		row("legitimate handshake p99 ms", b.P99ms, a.P99ms, f1)
		row("legitimate handshake max ms", b.MaxMs, a.MaxMs, f1)
		row("session frames sent (all runs)", float64(b.FramesSent), float64(a.FramesSent), d)
		t.add("session frames lost (all runs)", fmt.Sprint(b.FramesLost), fmt.Sprint(a.FramesLost), "")
		t.add("session frame errors: out of order, write errors, sessions ended (all runs)", fmt.Sprint(b.FrameErrors), fmt.Sprint(a.FrameErrors), "")
		row("session frame echo p50 ms", b.FrameP50ms, a.FrameP50ms, f2)
		row("session frame echo p99 ms", b.FrameP99ms, a.FrameP99ms, f2)
		t.add("sessions open at the end of the phase", fmt.Sprintf("%d of %d", b.SessionsAlive, x.Sessions), fmt.Sprintf("%d of %d", a.SessionsAlive, x.Sessions), "")
		row("server CPU, cores", b.ServerCores, a.ServerCores, f2)
		row("server RSS peak MiB", b.RSSPeakMiB, a.RSSPeakMiB, f1)
		row("server RSS mean MiB", b.RSSMeanMiB, a.RSSMeanMiB, f1)
		t.add("server RSS peak, first half / second half of the phase, MiB", f1(b.RSSFirstMiB)+" / "+f1(b.RSSSecondMiB), f1(a.RSSFirstMiB)+" / "+f1(a.RSSSecondMiB),
			"second / first: "+rx(b.RSSSecondMiB, b.RSSFirstMiB)+", "+rx(a.RSSSecondMiB, a.RSSFirstMiB))
		row("server goroutines, peak", b.GoroutinesPeak, a.GoroutinesPeak, f0)
		codes := map[string]bool{}
		for k := range b.ServerOutcomes {
			codes[k] = true
		}
		for k := range a.ServerOutcomes {
			codes[k] = true
		}
		for _, k := range sortedKeys(codes) {
			name := "server: handshakes refused, " + k
			if k == "ok" {
				name = "server: handshakes completed"
			}
			if k == "rate_limited" {
				name += " (HTTP 429 before the upgrade)"
			}
			row(name, b.ServerOutcomes[k], a.ServerOutcomes[k], d)
		}
		admitted := func(p DoSPhase) float64 {
			n := 0.0
			for k, v := range p.ServerOutcomes {
				if k != "rate_limited" {
					n += v
				}
			}
			if p.Seconds == 0 {
				return 0
			}
			return n / p.Seconds
		}
		row("server: upgrades admitted past the limits, per second (handshakes that ended in the phase, any outcome but 429)", admitted(b), admitted(a), f1)
		perS := func(r AdmitReport) float64 { return float64(r.Count) / max(r.Seconds, 1e-9) }
		row("server: upgrades admitted in the phase (each a signed challenge), timed at the hijack", float64(b.Admitted.Count), float64(a.Admitted.Count), d)
		row("server: upgrades admitted per second, so timed", perS(b.Admitted), perS(a.Admitted), f1)
		row("server: most upgrades admitted in any one second (worst run)", float64(b.Admitted.MaxPerS), float64(a.Admitted.MaxPerS), d)
		t.add(fmt.Sprintf("server: smallest burst that explains the admissions at HandshakeRate %.0f/s (worst run; the limiter's burst is %.0f)", c.Limits.HandshakeRate, burstOf(c.Limits.HandshakeRate)),
			f1(b.Admitted.Excess), f1(a.Admitted.Excess), "")
		w("%s\n", t)

		i, f := c.Idle, c.Flood
		w("#### %s: the attack as the attacker saw it\n\n", c.Name)
		t = &table{head: []string{"figure", "value"}}
		t.add("idle sockets wanted / source addresses", fmt.Sprintf("%d / %d", i.Sockets, i.Addrs))
		t.add("idle: upgrade attempts over the ramp and the attack", fmt.Sprint(i.Attempts))
		t.add("idle: admitted (upgraded and challenged)", fmt.Sprint(i.Admitted))
		t.add("idle: refused with HTTP 429", fmt.Sprint(i.Refused))
		t.add("idle: other outcomes (all runs)", failText(i.Other))
		t.add("idle: held open at once, peak / mean during the flood", fmt.Sprintf("%d / %.0f", i.HeldPeak, i.HeldMean))
		t.add("idle: how long the server kept one open, p50 / max s", fmt.Sprintf("%.2f / %.2f", i.HeldP50s, i.HeldMaxS))
		t.add("idle: how the server closed them (all runs)", failText(i.Closed))
		t.add("flood: loops / source addresses", fmt.Sprintf("%d / %d", f.Workers, f.Addrs))
		t.add("flood: attempts (per second)", fmt.Sprintf("%d (%.0f/s over %.0f s)", f.Attempts, f.Rate, f.Seconds))
		t.add("flood: refused with HTTP 429", fmt.Sprint(f.Refused))
		t.add("flood: admitted, challenged and answered with a bad signature", fmt.Sprint(f.Admitted))
		t.add("flood: how the server closed those (all runs)", failText(f.Rejected))
		t.add("flood: accepted by the server (all runs)", fmt.Sprint(f.Accepted))
		t.add("flood: other outcomes (all runs)", failText(f.Other))
		t.add("attacker process CPU over the ramp and the attack, cores", f2(median(pick(c.Runs, func(r *DoSRun) float64 { return r.AttackerCores }))))
		w("%s\n", t)
	}

	w("#### Every run\n\n")
	t = &table{head: []string{"configuration", "run", "legit p99 ms", "legit failed", "frames lost", "RSS peak MiB", "attack RSS halves MiB", "server VmHWM MiB", "idle admitted / refused", "idle held peak", "flood attempts / refused / admitted"}}
	for _, c := range x.Configs {
		for k, run := range c.Runs {
			b, a, at := run.Base, run.Attack, run.Attacker
			t.add(c.Name, fmt.Sprint(k+1), f1(b.P99ms)+" / "+f1(a.P99ms), fmt.Sprintf("%d / %d", b.LegitFailed, a.LegitFailed),
				fmt.Sprintf("%d / %d", b.FramesLost, a.FramesLost), f1(b.RSSPeakMiB)+" / "+f1(a.RSSPeakMiB),
				f1(a.RSSFirstMiB)+" / "+f1(a.RSSSecondMiB), f1(run.HWMMiB),
				fmt.Sprintf("%d / %d", at.Idle.Admitted, at.Idle.Refused), fmt.Sprint(at.Idle.HeldPeak),
				fmt.Sprintf("%d / %d / %d", at.Flood.Attempts, at.Flood.Refused, at.Flood.Admitted))
		}
	}
	w("Pairs are baseline / under attack.\n\n%s\n", t)

	// Plots are linked only when they are beside the file (not when -out
	// is outside the repository).
	if outDir := outDirOf(r); outDir != "" {
		if rel, err := filepath.Rel(filepath.Dir(file), outDir); err == nil && !strings.HasPrefix(rel, "..") {
			rel = filepath.ToSlash(rel)
			w("![server RSS each second, baseline and attack](%s/dos-rss.svg)\n\n![legitimate handshake latency, baseline and attack](%s/dos-latency.svg)\n\n", rel, rel)
		}
	}
	if len(x.Profiles) > 0 {
		w("#### Profiles of the server during the attack\n\n")
		w("From a separate run per configuration that missed a target, after the measured runs.\n\n")
		for _, p := range x.Profiles {
			rel := p.File
			if y, err := filepath.Rel(filepath.Dir(file), p.File); err == nil && !strings.HasPrefix(y, "..") {
				rel = filepath.ToSlash(y)
			}
			if len(p.Shares) > 0 {
				w("`%s` (%s). Share of CPU samples by what they were doing (shares overlap):\n\n", rel, p.Target)
				w("%s\n", sharesTable(p.Shares))
			}
			if p.Top != "" {
				w("`%s` (%s):\n\n```\n%s\n```\n\n", rel, p.Target, p.Top)
			}
		}
	}
	return sb.String()
}

// dosPlots are the server's RSS each second and the legitimate handshake
// latency CDF, baseline and attack, for each configuration.
func dosPlots(x *DoSResult) map[string]string {
	out := map[string]string{}
	percent := make([]float64, 101)
	for i := range percent {
		percent[i] = float64(i)
	}
	var rs, ls []series
	for i, c := range x.Configs {
		color := palette[(2*i)%len(palette)]
		acolor := palette[(2*i+1)%len(palette)]
		secs := func(v []float64) []float64 {
			xs := make([]float64, len(v))
			for k := range v {
				xs[k] = float64(k + 1)
			}
			return xs
		}
		if len(c.Base.RSS) > 0 {
			rs = append(rs, series{name: c.Name + ": baseline", xs: secs(c.Base.RSS), ys: c.Base.RSS, color: color, dashed: true})
		}
		if len(c.Attack.RSS) > 0 {
			rs = append(rs, series{name: c.Name + ": attack", xs: secs(c.Attack.RSS), ys: c.Attack.RSS, color: acolor})
		}
		if len(c.BaseCDF) > 0 {
			ls = append(ls, series{name: c.Name + ": baseline", xs: c.BaseCDF, ys: percent, color: color, dashed: true})
		}
		if len(c.AttackCDF) > 0 {
			ls = append(ls, series{name: c.Name + ": attack", xs: c.AttackCDF, ys: percent, color: acolor})
		}
	}
	out["dos-rss.svg"] = lineChart("Server RSS each second of the phase (median run)", axis{label: "seconds into the phase"}, axis{label: "RSS (MiB)"}, rs)
	out["dos-latency.svg"] = lineChart("Legitimate handshake latency (dashed: baseline, no attack)", axis{label: "dial to accept (ms)", log: true}, axis{label: "percentile"}, ls)
	return out
}

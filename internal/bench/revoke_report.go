package bench

import (
	"fmt"
	"strings"
	"time"

	"github.com/wsproof/wsproof/protocol"
)

// Target names of the revocation and room runs.
const (
	tRevokeLoad   = "revoked sockets seen closed by the load side within 1 s of the registry change"
	tRevokeServer = "revoked sockets closed by the server within 1 s of the registry change"
	tRevokeAfter  = "messages of revoked sessions delivered after the decision"
	tRoomP99      = "room broadcast p99 latency beside non-reading sessions"
	tRoomSlow     = "non-reading room sessions closed with slow_reader"
)

// revokeTargets evaluates the revocation: per case, the last socket as the
// load side saw it; over every case, the spec's bound at the server and the
// messages delivered after the decision. Every run must pass, not only the
// median.
func revokeTargets(r *RevokeResult) []Target {
	var out []Target
	base := r.Cases[0]
	for _, c := range r.Cases {
		fig := fmt.Sprintf("last %.0f ms (median of %d runs; worst run %.0f ms; %.0f ms after Watch reported the change): reading sessions %.0f ms",
			c.LastMs, len(c.Runs), c.WorstMs, c.LastAfterWatchMs, c.ReadingLastMs)
		if c.Slow > 0 {
			fig += fmt.Sprintf(", non-reading %.0f ms", c.SlowLastMs)
		}
		note := ""
		if c != base {
			note = fmt.Sprintf("baseline (every session reads) %.0f ms: %s; after Watch's report %.0f ms: %s",
				base.LastMs, rx(c.LastMs, base.LastMs), base.LastAfterWatchMs, rx(c.LastAfterWatchMs, base.LastAfterWatchMs))
		}
		if !loadSideBound(c) {
			note += fmt.Sprintf("; the server wrote every Close frame by %.0f ms (median), into its kernel's buffer behind data the non-reading clients never read, "+
				"then waited for their answer and dropped their connections at %.0f ms: they learn of the drop at their next write", c.ServerMs, c.ServerDropMs)
		}
		if c.Open > 0 {
			note += fmt.Sprintf("; %d sockets never seen closed within %s", c.Open, r.Wait)
		}
		out = append(out, Target{
			Name:   fmt.Sprintf("%s (%s)", tRevokeLoad, c.Name),
			Figure: fig,
			Limit:  "<= 1000 ms in every run",
			Pass:   c.WorstMs <= 1000 && c.Open == 0,
			Note:   strings.TrimPrefix(note, "; "),
		})
	}
	var worst float64
	var worstCase string
	var after, inFlight, seen, delivered int64
	runs := 0
	for _, c := range r.Cases {
		if c.WorstServerMs >= worst {
			worst, worstCase = c.WorstServerMs, c.Name
		}
		after, inFlight, seen, delivered = after+c.AfterDecision, inFlight+c.InFlight, seen+c.AfterSeen, delivered+c.Delivered
		runs += len(c.Runs)
	}
	out = append(out, Target{
		Name:   tRevokeServer,
		Figure: fmt.Sprintf("last Close frame written or connection dropped %.0f ms after the change, worst of %d runs (%s)", worst, runs, worstCase),
		Limit:  "<= 1000 ms in every run (spec section \"Revocation\")",
		Pass:   worst <= 1000,
	})
	out = append(out, Target{
		Name:   tRevokeAfter,
		Figure: fmt.Sprintf("%d of %d messages delivered, all runs of every configuration", after, delivered),
		Limit:  "0",
		Pass:   after == 0,
		Note: fmt.Sprintf("%d returned by a Read already waiting when the server decided (delivered just before the decision); %d delivered after Watch reported the change, before the decision",
			inFlight, seen),
	})
	return out
}

// roomTargets evaluates the room's measured cases against the baseline.
func roomTargets(r *RoomResult) []Target {
	var out []Target
	base := r.Cases[0]
	for _, c := range r.Cases {
		if c.Slow == 0 {
			continue
		}
		out = append(out, Target{
			Name: fmt.Sprintf("%s (%s)", tRoomP99, c.Name),
			Figure: fmt.Sprintf("p99 %.1f ms, p50 %.1f ms (median of %d runs; worst run p99 %.1f ms); %d of %d deliveries lost",
				c.P99ms, c.P50ms, len(c.Runs), c.WorstP99, c.Lost, c.Expected),
			Limit: "p99 < 250 ms in every run, nothing lost",
			Pass:  c.WorstP99 < 250 && c.Lost == 0,
			Note:  fmt.Sprintf("baseline without them: p99 %.1f ms, %s", base.P99ms, rx(c.P99ms, base.P99ms)),
		})
		closed, total := 0, 0
		var decided []float64
		for _, run := range c.Runs {
			for _, e := range run.SlowEnds {
				total++
				if e.Code == protocol.CodeSlowReader.CloseCode() {
					closed++
					decided = append(decided, e.DecidedS)
				}
			}
		}
		fig := fmt.Sprintf("%d of %d closed with 4009 slow_reader over %d runs", closed, total, len(c.Runs))
		if len(decided) > 0 {
			fig += fmt.Sprintf(", the room's Sends to them failing from %.2f s after the first broadcast (median)", median(decided))
		}
		out = append(out, Target{
			Name:   fmt.Sprintf("%s (%s)", tRoomSlow, c.Name),
			Figure: fig,
			Limit:  fmt.Sprintf("every one, within the run (%s of broadcasts)", r.Duration),
			Pass:   closed == total,
		})
	}
	return out
}

// revokeMarkdown renders the revocation tables.
func revokeMarkdown(r *RevokeResult, plotDir string) string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	w("### Revocation: %d live sessions, %d of them not reading\n\n", r.N, r.Slow)
	w("A fresh server child per run serves the sessions from a registry file it watches as `wsproof serve` does (`keys.FileRegistry.Watch`, every %s; `Recheck` on each change). "+
		"Its application sends each session %s at the start (8 KiB messages), then %s to every session every %s, with the non-blocking `Send`, and reads everything. "+
		"Every session sends a 16-byte message every %s; the non-reading ones never read, from sockets with a %d-byte receive buffer, and the server's write deadline is %s so that its writes to them are still blocked when the key is revoked. "+
		"The load side then renames a registry file in which the sessions' key is revoked over the old one, and times from the rename: a reading session ends when its Close frame arrives (or its connection drops); "+
		"a non-reading one when its kernel reports the connection reset, which happens at its next write after the server dropped the connection (a full receive buffer takes no Close frame and no FIN), so those times are late by up to %s. "+
		"The server child reports when it wrote each Close frame and dropped each connection, and when Watch called back. "+
		"A message counts as delivered after the decision when the handler's `Read` that returned it began after the session's context was done (the server cancels it in the step that decides the close) or after `Recheck` returned; "+
		"a `Read` already waiting at the decision that returned a message is counted apart (the server hands it over, under the socket's lock, before it decides).\n\n",
		r.WatchInterval, sizeName(r.Burst), sizeName(r.PushSize), r.PushEvery, r.SendEvery, r.Rcvbuf, r.WriteTimeout, r.SendEvery)
	head := []string{"figure (medians of the runs; counts are totals)"}
	for i, c := range r.Cases {
		head = append(head, c.Name)
		if i > 0 {
			head = append(head, "vs baseline")
		}
	}
	t := &table{head: head}
	row := func(name string, f func(c *RevokeCase) float64, format func(float64) string, ratio bool) {
		cells := []string{name}
		for i, c := range r.Cases {
			cells = append(cells, format(f(c)))
			if i > 0 {
				if ratio {
					cells = append(cells, rx(f(c), f(r.Cases[0])))
				} else {
					cells = append(cells, "")
				}
			}
		}
		t.add(cells...)
	}
	text := func(name string, f func(c *RevokeCase) string) {
		cells := []string{name}
		for i, c := range r.Cases {
			cells = append(cells, f(c))
			if i > 0 {
				cells = append(cells, "")
			}
		}
		t.add(cells...)
	}
	d := func(v float64) string { return fmt.Sprint(int64(v)) }
	row("load side: last socket ended, ms after the rename", func(c *RevokeCase) float64 { return c.LastMs }, f0, true)
	row("load side: last socket, worst run, ms", func(c *RevokeCase) float64 { return c.WorstMs }, f0, true)
	row("load side: last socket ended, ms after Watch reported the change", func(c *RevokeCase) float64 { return c.LastAfterWatchMs }, f0, true)
	row("reading sessions: p50 ms", func(c *RevokeCase) float64 { return c.ReadingP50Ms }, f0, true)
	row("reading sessions: last ms", func(c *RevokeCase) float64 { return c.ReadingLastMs }, f0, true)
	text("non-reading sessions: p50 / last ms", func(c *RevokeCase) string {
		if c.Slow == 0 {
			return "–"
		}
		return f0(c.SlowP50Ms) + " / " + f0(c.SlowLastMs)
	})
	row("server: last Close frame written or connection dropped, ms (the spec's bound)", func(c *RevokeCase) float64 { return c.ServerMs }, f0, true)
	row("server: last connection dropped, ms", func(c *RevokeCase) float64 { return c.ServerDropMs }, f0, true)
	row("Watch reported the change, ms after the rename (the phase of its poll every "+r.WatchInterval+")", func(c *RevokeCase) float64 { return c.WatchMs }, f0, false)
	row("Recheck ran, ms", func(c *RevokeCase) float64 { return c.RecheckMs }, f1, false)
	text("sockets Recheck closed, each run", func(c *RevokeCase) string {
		var v []string
		for _, run := range c.Runs {
			v = append(v, fmt.Sprint(run.Closed))
		}
		return strings.Join(v, ", ")
	})
	text("non-reading sockets whose Close frame the server wrote, each run", func(c *RevokeCase) string {
		if c.Slow == 0 {
			return "–"
		}
		var v []string
		for _, run := range c.Runs {
			v = append(v, fmt.Sprintf("%d of %d", run.SlowFrames, c.Slow))
		}
		return strings.Join(v, ", ")
	})
	text("octets written to each non-reading socket before the change (median, each run)", func(c *RevokeCase) string {
		if c.Slow == 0 {
			return "–"
		}
		var v []string
		for _, run := range c.Runs {
			v = append(v, d(run.SlowWrittenMedian))
		}
		return strings.Join(v, ", ")
	})
	text("how the reading sessions saw their sockets end (all runs)", func(c *RevokeCase) string {
		m := map[string]int{}
		for _, run := range c.Runs {
			for k, v := range run.ReadingEnds {
				m[k] += v
			}
		}
		return sortedCounts(m)
	})
	text("how the handlers' Read ended (all runs)", func(c *RevokeCase) string {
		m := map[string]int{}
		for _, run := range c.Runs {
			for k, v := range run.ServerEnds {
				m[k] += v
			}
		}
		return sortedCounts(m)
	})
	row("messages delivered to the handlers (all runs)", func(c *RevokeCase) float64 { return float64(c.Delivered) }, d, false)
	row("**delivered after the decision** (all runs)", func(c *RevokeCase) float64 { return float64(c.AfterDecision) }, d, false)
	row("returned by a Read waiting at the decision (all runs)", func(c *RevokeCase) float64 { return float64(c.InFlight) }, d, false)
	row("delivered after Watch reported the change, before the decision (all runs)", func(c *RevokeCase) float64 { return float64(c.AfterSeen) }, d, false)
	row("sockets not seen closed within "+r.Wait+" (all runs)", func(c *RevokeCase) float64 { return float64(c.Open) }, d, false)
	w("%s\n", t)

	t = &table{head: []string{"configuration", "run", "load side last ms (after Watch's report)", "reading p50 / p99 / last ms", "non-reading p50 / p99 / last ms", "server: frame or drop / drop ms", "Watch ms", "Recheck ms", "delivered", "after the decision"}}
	for _, c := range r.Cases {
		for i, run := range c.Runs {
			slow := "–"
			if c.Slow > 0 {
				slow = fmt.Sprintf("%.0f / %.0f / %.0f", run.SlowP50Ms, run.SlowP99Ms, run.SlowLastMs)
			}
			t.add(c.Name, fmt.Sprint(i+1), fmt.Sprintf("%.0f (%.0f)", run.LastMs, run.LastAfterWatchMs), fmt.Sprintf("%.0f / %.0f / %.0f", run.ReadingP50Ms, run.ReadingP99Ms, run.ReadingLastMs), slow,
				fmt.Sprintf("%.0f / %.0f", run.ServerMs, run.ServerDropMs), f0(run.WatchMs), f1(run.RecheckMs), fmt.Sprint(run.Delivered), fmt.Sprint(run.AfterDecision))
		}
	}
	w("Every run:\n\n%s\n", t)
	if plotDir != "" {
		w("![revoked sockets closed, ms after the registry change](%s/revoke-close.svg)\n\n", plotDir)
	}
	return sb.String()
}

// roomMarkdown renders the room tables.
func roomMarkdown(r *RoomResult, plotDir string) string {
	every, _ := time.ParseDuration(r.Every)
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	w("### Broadcast room: %d reading sessions beside %d that never read\n\n", r.Readers, r.Slow)
	w("A fresh server child per run whose application is a room as `cmd/wsproof/serve.go`'s: every message a session sends goes to every session, with the non-blocking `Send` (outbound bound %s per socket, write deadline 10 s: the defaults). "+
		"One reading session sends a %s broadcast every %s for %s, stamped with its send time; every reading session, the sender included, measures each one's latency from send to receipt, and a broadcast a reading session never receives counts as later than any. "+
		"The non-reading sessions never read, from sockets with a %d-byte receive buffer, and send nothing. "+
		"The child reports how each handler's `Read` ended and when the room's `Send` to a session first failed (the server's decision to close it).\n\n",
		sizeName(r.MaxQueued), sizeName(r.Size), r.Every, r.Duration, r.Rcvbuf)
	head := []string{"figure (medians of the runs; counts are totals)"}
	for i, c := range r.Cases {
		head = append(head, c.Name)
		if i > 0 {
			head = append(head, "vs baseline")
		}
	}
	t := &table{head: head}
	row := func(name string, f func(c *RoomCase) string, ratio func(c *RoomCase) float64) {
		cells := []string{name}
		for i, c := range r.Cases {
			cells = append(cells, f(c))
			if i > 0 {
				if ratio != nil {
					cells = append(cells, rx(ratio(c), ratio(r.Cases[0])))
				} else {
					cells = append(cells, "")
				}
			}
		}
		t.add(cells...)
	}
	row("broadcast latency p50 ms", func(c *RoomCase) string { return f2(c.P50ms) }, func(c *RoomCase) float64 { return c.P50ms })
	row("**broadcast latency p99 ms**", func(c *RoomCase) string { return f2(c.P99ms) }, func(c *RoomCase) float64 { return c.P99ms })
	row("p99, worst run ms", func(c *RoomCase) string { return f2(c.WorstP99) }, func(c *RoomCase) float64 { return c.WorstP99 })
	row("latency max ms", func(c *RoomCase) string { return f1(c.MaxMs) }, func(c *RoomCase) float64 { return c.MaxMs })
	row("broadcasts sent (all runs)", func(c *RoomCase) string { return fmt.Sprint(c.Sent) }, nil)
	row("deliveries to reading sessions lost (all runs)", func(c *RoomCase) string { return fmt.Sprintf("%d of %d", c.Lost, c.Expected) }, nil)
	row("reading sessions that ended during a run", func(c *RoomCase) string { return sortedCounts(c.ReaderEnds) }, nil)
	row("non-reading sessions: how they ended, each run", func(c *RoomCase) string {
		if c.Slow == 0 {
			return "–"
		}
		var v []string
		for _, run := range c.Runs {
			var e []string
			for _, s := range run.SlowEnds {
				e = append(e, slowEndText(s))
			}
			v = append(v, strings.Join(e, ", "))
		}
		return strings.Join(v, "; ")
	}, nil)
	row("non-reading sessions: the room's Sends to them failing from, s after the first broadcast", func(c *RoomCase) string {
		if c.Slow == 0 {
			return "–"
		}
		var v []string
		for _, run := range c.Runs {
			var e []string
			for _, s := range run.SlowEnds {
				if s.DecidedS > 0 {
					e = append(e, f2(s.DecidedS))
				} else {
					e = append(e, "never")
				}
			}
			v = append(v, strings.Join(e, ", "))
		}
		return strings.Join(v, "; ")
	}, nil)
	row("non-reading sessions: room octets sent to each before its Sends failed (about: that time / period x size), MiB", func(c *RoomCase) string {
		if c.Slow == 0 {
			return "–"
		}
		var v []string
		for _, run := range c.Runs {
			var e []string
			for _, s := range run.SlowEnds {
				if s.DecidedS > 0 && every > 0 {
					e = append(e, f1(s.DecidedS/every.Seconds()*float64(r.Size)/(1<<20)))
				} else {
					e = append(e, "–")
				}
			}
			v = append(v, strings.Join(e, ", "))
		}
		return strings.Join(v, "; ")
	}, nil)
	row("non-reading sessions: their handler's Read ended, s after the first broadcast", func(c *RoomCase) string {
		if c.Slow == 0 {
			return "–"
		}
		var v []string
		for _, run := range c.Runs {
			var e []string
			for _, s := range run.SlowEnds {
				if s.HandlerS > 0 {
					e = append(e, f2(s.HandlerS))
				} else {
					e = append(e, "open")
				}
			}
			v = append(v, strings.Join(e, ", "))
		}
		return strings.Join(v, "; ")
	}, nil)
	w("%s\n", t)
	t = &table{head: []string{"configuration", "run", "p50 ms", "p99 ms", "max ms", "broadcasts", "lost", "room Sends that failed"}}
	for _, c := range r.Cases {
		for i, run := range c.Runs {
			t.add(c.Name, fmt.Sprint(i+1), f2(run.P50ms), f2(run.P99ms), f1(run.MaxMs), fmt.Sprint(run.Sent), fmt.Sprint(run.Lost), fmt.Sprint(run.SendErrors))
		}
	}
	w("Every run:\n\n%s\n", t)
	if plotDir != "" {
		w("![room broadcast latency CDF](%s/room-latency.svg)\n\n", plotDir)
	}
	return sb.String()
}

// revokeRoomPlots are the close times of the revocation and the room's
// latency CDF.
func revokeRoomPlots(res *Results) map[string]string {
	out := map[string]string{}
	percent := make([]float64, 101)
	for i := range percent {
		percent[i] = float64(i)
	}
	short := []string{"baseline", "small sndbuf", "kernel sndbuf"}
	label := func(i int) string {
		if i < len(short) {
			return short[i]
		}
		return fmt.Sprintf("case %d", i+1)
	}
	if r := res.Revoke; r != nil {
		var ss []series
		for i, c := range r.Cases {
			color := palette[i%len(palette)]
			if len(c.ReadingCDF) > 0 {
				ss = append(ss, series{name: label(i) + ": reading", xs: c.ReadingCDF, ys: percent, color: color})
			}
			if len(c.SlowCDF) > 0 {
				ss = append(ss, series{name: label(i) + ": not reading", xs: c.SlowCDF, ys: percent, color: color, dashed: true})
			}
		}
		out["revoke-close.svg"] = lineChart(fmt.Sprintf("Revocation of %d sessions: socket ended, as the load side saw it", r.N),
			axis{label: "ms after the registry file's rename"}, axis{label: "percentile"}, ss)
	}
	if r := res.Room; r != nil {
		var ss []series
		for i, c := range r.Cases {
			if len(c.CDF) > 0 {
				ss = append(ss, series{name: label(i), xs: c.CDF, ys: percent, color: palette[i%len(palette)]})
			}
		}
		out["room-latency.svg"] = lineChart(fmt.Sprintf("Room broadcast latency, %d reading sessions", r.Readers),
			axis{label: "send to receipt (ms)", log: true}, axis{label: "percentile"}, ss)
	}
	return out
}

package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the server and attacker child, as
// the command's binary does: run starts os.Executable() with the child
// marker set, and Main routes such a process to the child.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestMainExit checks Main's exit statuses for the command lines that
// measure nothing: -h succeeds and prints the usage, a bad command line is
// 2, and a run that fails (here, -from a missing file) is 1.
func TestMainExit(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	for _, c := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"-h"}, 0, "Usage: wsproof-bench [flags]"},
		{[]string{"-only", "nope"}, 2, `wsproof-bench: unknown section "nope"`},
		{[]string{"extra"}, 2, `wsproof-bench: unexpected argument "extra"`},
		{[]string{"-cross=maybe"}, 2, "wsproof-bench: -cross=maybe: want true or false"},
		{[]string{"-merge", "a.json", "-from", "b.json"}, 2, "wsproof-bench: -merge and -from do not go together"},
		{[]string{"-from", missing}, 1, "wsproof-bench: open " + missing},
	} {
		var stdout, stderr strings.Builder
		if got := Main(c.args, &stdout, &stderr); got != c.status || !strings.Contains(stderr.String(), c.stderr) || stdout.Len() != 0 {
			t.Errorf("Main(%q) = %d, stdout %q, stderr %q; want %d and a stderr containing %q", c.args, got, stdout.String(), stderr.String(), c.status, c.stderr)
		}
	}
}

// TestQuick runs the quick mode end to end (without the Centrifuge harness,
// a separate module whose first build takes a minute, and without the
// cross builds) and checks that every section produced results, the files
// were written and no frame was lost. It asserts no performance figure.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	out := t.TempDir()
	md := filepath.Join(out, "BENCH.md")
	if err := os.WriteFile(md, []byte("# kept\n\n"+mdBegin+"\nold\n"+mdEnd+"\n\ntail kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := parseOptions([]string{"-quick", "-skip", "centrifuge", "-out", out, "-md", md, "-v=false"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		o.verbose = true
	}
	// Smaller still than -quick: the race detector slows every handshake.
	o.algs = o.algs[:3]
	o.concs = []int{4}
	o.memN, o.scaleN = 100, 100
	o.frameConns, o.frameDur, o.refreshDur, o.memSettle = 16, 150*time.Millisecond, 1500*time.Millisecond, 50*time.Millisecond
	res, err := run(o, os.Stdout, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}

	// Plain and every algorithm, with and without TLS, and the reconnect
	// over TLS (ES256).
	if n, want := len(res.Handshakes), 2*(1+len(o.algs))+1; n != want {
		t.Errorf("%d handshake cells, want %d", n, want)
	}
	for _, c := range res.Handshakes {
		// Only the connects that start before the first ticket arrives
		// (about one per concurrent client) find no session to resume.
		if c.Resumed && c.ResumedShare < 0.5 {
			t.Errorf("handshake %s: %.0f%% of connects resumed a TLS session, want most", c.name(), 100*c.ResumedShare)
		}
		if c.Ops == 0 || c.Rate <= 0 || c.CPUus <= 0 || len(c.Failures) > 0 {
			t.Errorf("handshake %s tls=%v: %d ops, %.0f/s, %.0f µs, failures %v", c.name(), c.TLS, c.Ops, c.Rate, c.CPUus, c.Failures)
		}
	}
	// A server floor and a client floor for each algorithm.
	if len(res.Floors) != 2*len(o.algs) {
		t.Errorf("%d floors, want %d", len(res.Floors), 2*len(o.algs))
	}
	for _, alg := range o.algs {
		if f, ok := res.floor(clientFloorName(alg)); !ok || f <= 0 {
			t.Errorf("client floor %s: %v %.0f µs", alg, ok, f)
		}
	}
	found := false
	for _, tg := range res.Targets {
		found = found || strings.HasPrefix(tg.Name, tClientCPU)
	}
	if !found {
		t.Errorf("no %q target", tClientCPU)
	}
	if len(res.Frames) != 8 {
		t.Errorf("%d frame cells, want 8", len(res.Frames))
	}
	for _, c := range res.Frames {
		if c.Received == 0 || c.Lost != 0 || c.Errors != 0 {
			t.Errorf("frames %s %d B x%d: received %d, lost %d, errors %d", c.System, c.Size, c.Inflight, c.Received, c.Lost, c.Errors)
		}
	}
	if rf := res.Refresh; rf == nil {
		t.Error("no refresh run")
	} else if rf.Lost != 0 || rf.Errors != 0 || rf.RefreshFails != 0 || rf.Refreshes < rf.Conns || rf.Received == 0 {
		t.Errorf("refresh run: %d refreshes (%d failed), received %d, lost %d, errors %d", rf.Refreshes, rf.RefreshFails, rf.Received, rf.Lost, rf.Errors)
	}
	if len(res.Memory) != 2 {
		t.Errorf("%d memory results, want 2", len(res.Memory))
	}
	for _, m := range res.Memory {
		if m.PerConnKiB <= 0 || m.Failures != 0 {
			t.Errorf("memory %s: %.1f KiB per socket, %d failures", m.System, m.PerConnKiB, m.Failures)
		}
	}
	if s := res.Scale; s == nil || s.Opened != o.scaleN || s.Failures != 0 {
		t.Errorf("scale: %+v", s)
	}
	if len(res.Device) != 2 || res.Device[0].SizeBytes == 0 || res.Device[1].RSSKiB == 0 {
		t.Errorf("device: %+v", res.Device)
	}
	if len(res.DeviceAllocs) != 2 || res.DeviceAllocs[0].Allocs <= 0 || res.DeviceAllocs[1].Allocs <= res.DeviceAllocs[0].Allocs {
		t.Errorf("device allocations: %+v", res.DeviceAllocs)
	}
	if len(res.Targets) == 0 {
		t.Error("no targets evaluated")
	}
	// The revocation and the room: run returns an error when their quick
	// checks fail (revokeCheck, roomCheck); here, that every case ran.
	if r := res.Revoke; r == nil || len(r.Cases) != 3 {
		t.Errorf("revoke: %+v", r)
	} else {
		for _, c := range r.Cases {
			if len(c.Runs) != 1 || c.Runs[0].Closed != r.N || c.Runs[0].Delivered == 0 || (c.Slow > 0 && len(c.SlowCDF) == 0) {
				t.Errorf("revoke %s: %+v", c.Name, c.Runs)
			}
		}
	}
	if r := res.Room; r == nil || len(r.Cases) != 3 {
		t.Errorf("room: %+v", r)
	} else {
		for _, c := range r.Cases {
			if len(c.Runs) != 1 || c.Sent == 0 || len(c.Runs[0].SlowEnds) != c.Slow {
				t.Errorf("room %s: %+v", c.Name, c.Runs)
			}
		}
	}
	if want := "go run ./cmd/wsproof-bench -quick -skip centrifuge -out " + filepath.ToSlash(out) + " -md " + filepath.ToSlash(md); res.Command != want {
		t.Errorf("recorded command %q, want %q", res.Command, want)
	}
	// The denial-of-service scenario: every part ran and the counts add up;
	// no figure that depends on the machine's speed is asserted (the
	// legitimate handshakes refused under attack, for one, are a finding).
	if x := res.DoS; x == nil || len(x.Configs) == 0 {
		t.Error("no denial-of-service result")
	} else {
		for _, c := range x.Configs {
			b, a := c.Base, c.Attack
			if b.LegitOK == 0 || b.LegitFailed != 0 || a.LegitAttempts == 0 {
				t.Errorf("dos %s: legitimate baseline %d ok, %d failed (%v); under attack %d attempts", c.Name, b.LegitOK, b.LegitFailed, b.LegitFailures, a.LegitAttempts)
			}
			if b.FramesSent == 0 || a.FramesSent == 0 || b.FramesLost+a.FramesLost != 0 || b.FrameErrors+a.FrameErrors != 0 || a.SessionsAlive != x.Sessions {
				t.Errorf("dos %s: frames sent %d/%d lost %d/%d errors %d/%d, sessions alive %d of %d", c.Name, b.FramesSent, a.FramesSent, b.FramesLost, a.FramesLost, b.FrameErrors, a.FrameErrors, a.SessionsAlive, x.Sessions)
			}
			if c.Idle.Admitted == 0 || c.Idle.Closed == nil || c.Flood.Attempts == 0 || c.Flood.Admitted == 0 || c.Flood.Accepted != 0 {
				t.Errorf("dos %s: idle %+v; flood %+v", c.Name, c.Idle, c.Flood)
			}
			if len(a.RSS) == 0 || a.RSSPeakMiB <= 0 || a.ServerOutcomes["ok"] == 0 {
				t.Errorf("dos %s: RSS samples %v, server outcomes %v", c.Name, a.RSS, a.ServerOutcomes)
			}
		}
		want := 0
		for _, c := range x.Configs {
			want += 6
			if c.BoundOnly {
				want -= 2
			}
			// Every phase counted the server's admissions, and the global
			// bound held (the limiter's design, not the machine's speed).
			if c.Base.Admitted.Count == 0 || c.Attack.Admitted.Count == 0 || c.Attack.Admitted.Rate != c.Limits.HandshakeRate {
				t.Errorf("dos %s: admissions %+v / %+v", c.Name, c.Base.Admitted, c.Attack.Admitted)
			}
		}
		if len(x.Targets) != want {
			t.Errorf("%d dos targets, want %d", len(x.Targets), want)
		}
		for _, tg := range x.Targets {
			if strings.HasPrefix(tg.Name, tDoSBound) && !tg.Pass {
				t.Errorf("%s: %s", tg.Name, tg.Figure)
			}
		}
	}

	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	for _, f := range []string{"handshakes.svg", "handshake-latency.svg", "frames.svg", "frame-latency.svg", "memory.svg", "scale-latency.svg", "dos-rss.svg", "dos-latency.svg", "revoke-close.svg", "room-latency.svg"} {
		svg, err := os.ReadFile(filepath.Join(out, f))
		if err != nil || !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "polyline") && !strings.Contains(string(svg), "<rect x=") {
			t.Errorf("plot %s missing or empty: %v", f, err)
		}
	}
	doc, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# kept", "tail kept", "### Handshakes without TLS", "### Frames while every session refreshes", "### Targets", "### Revocation", "### Broadcast room"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if strings.Contains(string(doc), "\nold\n") {
		t.Error("markdown kept the old generated block")
	}
	if !strings.Contains(string(doc), mdDoSBegin) || !strings.Contains(string(doc), "every figure beside its baseline") {
		t.Error("markdown lacks the denial-of-service block")
	}

	// -only dos rewrites only the denial-of-service block.
	if err := os.WriteFile(md, []byte("# kept\n\n"+mdBegin+"\nmain kept\n"+mdEnd+"\n\n"+mdDoSBegin+"\nold dos\n"+mdDoSEnd+"\n\ntail kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	only := *res
	only.Sections = []string{"dos"}
	if err := writeMarkdown(md, &only); err != nil {
		t.Fatal(err)
	}
	doc, err = os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"main kept", "tail kept", "every figure beside its baseline"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("markdown after -only dos lacks %q", want)
		}
	}
	if strings.Contains(string(doc), "old dos") {
		t.Error("-only dos kept the old denial-of-service block")
	}

	// -from renders the same outputs from the saved results.
	again := t.TempDir()
	o2, err := parseOptions([]string{"-from", filepath.Join(out, "results.json"), "-out", again, "-md", filepath.Join(again, "B.md")}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := render(o2, os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"results.json", "handshakes.svg", "memory.svg", "B.md"} {
		if _, err := os.Stat(filepath.Join(again, f)); err != nil {
			t.Errorf("-from: %v", err)
		}
	}
}

// TestMerge checks -merge: the sections a run measured replace the earlier
// results', the others are kept with the run that measured them, targets
// are evaluated on the merged results, and the Markdown names each run and
// prints no ratio between sections of different runs.
func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 0, 10, 0, 0, time.UTC)
	old := &Results{Started: t0, Mode: "full", Runs: 3, Command: "go run ./cmd/wsproof-bench -out docs/bench", Elapsed: "14m39s",
		Sections: []string{"handshake", "centrifuge", "frames", "memory", "scale"},
		Frames:   []*FrameCell{{System: "plain", Size: 64, Inflight: 1, Rate: 100}, {System: "wsproof", Size: 64, Inflight: 1, Rate: 95}},
		Memory:   []*MemResult{{System: "plain", N: 10, PerConnKiB: 16}, {System: "wsproof", N: 10, PerConnKiB: 19}},
		Scale:    &ScaleResult{N: 10, Opened: 10, RSSPerSessKB: 39, Runs: []ScaleRun{{Opened: 10}}},
		Profiles: []Profile{{Target: tFrames + ", 64 B x1 in flight", File: "old-frames.pprof"},
			{Target: tHandshakeCPU + ", c=32", File: "old-hs.pprof"}},
	}
	cur := &Results{Started: t0.Add(24 * time.Hour), Mode: "full", Runs: 3, Command: "go run ./cmd/wsproof-bench -only memory,room -merge docs/bench/results.json -out docs/bench", Elapsed: "4m",
		Sections: []string{"memory", "room"},
		Memory:   []*MemResult{{System: "plain", N: 10, PerConnKiB: 16}, {System: "wsproof", N: 10, PerConnKiB: 22}},
		Room: &RoomResult{Readers: 5, Slow: 2, Duration: "1s", Cases: []*RoomCase{{Name: "base", P99ms: 2, WorstP99: 2, Runs: []RoomRun{{}}},
			{Name: "slow", Slow: 2, P99ms: 3, WorstP99: 3, Runs: []RoomRun{{SlowEnds: []SlowEnd{{Code: 4009}, {Code: 4009}}}}}}},
	}
	m := mergeResults(old, cur)
	m.Targets = evaluate(m)
	if got, want := strings.Join(m.Sections, ","), "handshake,centrifuge,frames,memory,scale,room"; got != want {
		t.Errorf("sections %s, want %s", got, want)
	}
	if len(m.Provenance) != 2 || strings.Join(m.Provenance[0].Sections, ",") != "handshake,centrifuge,frames,scale" || !m.Provenance[1].Started.Equal(cur.Started) {
		t.Errorf("provenance %+v", m.Provenance)
	}
	if m.Frames == nil || m.Scale == nil || m.mem("wsproof").PerConnKiB != 22 || m.Room == nil {
		t.Errorf("merged data: frames %v scale %v memory %+v room %v", m.Frames, m.Scale, m.mem("wsproof"), m.Room)
	}
	if len(m.Profiles) != 2 {
		t.Errorf("profiles %+v, want the two of sections not re-run", m.Profiles)
	}
	var names []string
	for _, x := range m.Targets {
		names = append(names, x.Name)
	}
	for _, want := range []string{tFrames, tMemory, tRoomP99} {
		if !strings.Contains(strings.Join(names, "\n"), want) {
			t.Errorf("targets %q lack %q", names, want)
		}
	}
	md := markdown(m, "BENCHMARKS.md")
	for _, want := range []string{"_Merged from 2 runs", "- handshake, centrifuge, frames, scale: generated by `go run ./cmd/wsproof-bench -out docs/bench`",
		"- memory, room: generated by `go run ./cmd/wsproof-bench -only memory,room", "### Broadcast room"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "idle plain gorilla socket's") {
		t.Error("markdown prints a ratio of the scale run to the memory run of another run")
	}
	// Merging again keeps each section with its run.
	again := mergeResults(m, &Results{Started: t0.Add(48 * time.Hour), Command: "third", Sections: []string{"frames"}, Frames: old.Frames})
	if len(again.Provenance) != 3 || strings.Join(again.Provenance[0].Sections, ",") != "handshake,centrifuge,scale" {
		t.Errorf("second merge: provenance %+v", again.Provenance)
	}
}

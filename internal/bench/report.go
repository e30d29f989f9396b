package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/wsproof/wsproof/keys"
)

// hs is the handshake cell of a full handshake (no TLS session resumed).
func (r *Results) hs(system, alg string, tlsOn bool, conc int) *HSCell {
	for _, c := range r.Handshakes {
		if c.System == system && c.Alg == alg && c.TLS == tlsOn && c.Conc == conc && !c.Resumed {
			return c
		}
	}
	return nil
}

func (r *Results) floor(name string) (float64, bool) {
	for _, f := range r.Floors {
		if f.Name == name {
			return f.CPUus, true
		}
	}
	return 0, false
}

func (r *Results) frame(system string, size, inflight int) *FrameCell {
	for _, c := range r.Frames {
		if c.System == system && c.Size == size && c.Inflight == inflight {
			return c
		}
	}
	return nil
}

func (r *Results) mem(system string) *MemResult {
	for _, m := range r.Memory {
		if m.System == system {
			return m
		}
	}
	return nil
}

// Target names, used to decide which profiles to capture.
const (
	tHandshakeCPU = "server CPU per ES256 handshake, no TLS"
	tOverhead     = "protocol overhead vs Centrifuge"
	tClientCPU    = "client CPU per ES256 handshake, no TLS"
	tFrames       = "frame throughput vs plain gorilla"
	tLost         = "frames lost during refreshes"
	tMemory       = "RSS per idle authenticated socket"
	tScale        = "concurrent sessions with zero failures"
	tDeviceSize   = "device program size vs plain gorilla (stripped)"
	tDeviceRSS    = "device program RSS while connected vs plain gorilla"
)

// evaluate computes the issues' targets from the medians of the results,
// whichever runs they come from (-merge).
func evaluate(r *Results) []Target {
	var out []Target
	var concs, sizes, inflights []int
	for _, c := range r.Handshakes {
		if !contains(concs, c.Conc) {
			concs = append(concs, c.Conc)
		}
	}
	for _, c := range r.Frames {
		if !contains(sizes, c.Size) {
			sizes = append(sizes, c.Size)
		}
		if !contains(inflights, c.Inflight) {
			inflights = append(inflights, c.Inflight)
		}
	}
	floor, hasFloor := r.floor("wsproof ES256")
	for _, conc := range concs {
		es, pl := r.hs("wsproof", "ES256", false, conc), r.hs("plain", "", false, conc)
		if es == nil || pl == nil || !hasFloor {
			continue
		}
		limit := pl.CPUus + 1.25*floor
		out = append(out, Target{
			Name:   fmt.Sprintf("%s, c=%d", tHandshakeCPU, conc),
			Figure: fmt.Sprintf("%.0f µs", es.CPUus),
			Limit:  fmt.Sprintf("<= %.0f µs (plain upgrade %.0f + 1.25 x floor %.0f)", limit, pl.CPUus, floor),
			Pass:   es.CPUus <= limit,
			Note:   fmt.Sprintf("authentication adds %.0f µs = %.2f x floor", es.CPUus-pl.CPUus, (es.CPUus-pl.CPUus)/floor),
		})
	}
	hsFloor, ok1 := r.floor("JWT HS256")
	esFloor, ok2 := r.floor("JWT ES256")
	for _, conc := range concs {
		es, pl := r.hs("wsproof", "ES256", false, conc), r.hs("plain", "", false, conc)
		chs, ces, anon := r.hs("centrifuge", "HS256", false, conc), r.hs("centrifuge", "ES256", false, conc), r.hs("centrifuge", "anon", false, conc)
		if es == nil || chs == nil || ces == nil || !hasFloor || !ok1 || !ok2 {
			continue
		}
		ours := es.CPUus - floor
		theirs := math.Min(chs.CPUus-hsFloor, ces.CPUus-esFloor)
		note := ""
		if pl != nil && anon != nil {
			note = fmt.Sprintf("net of each stack's own unauthenticated connect: wsproof %.0f µs (%.0f - plain %.0f - floor), Centrifuge %.0f µs (ES256 %.0f - no token %.0f - verify %.0f)",
				es.CPUus-pl.CPUus-floor, es.CPUus, pl.CPUus, ces.CPUus-anon.CPUus-esFloor, ces.CPUus, anon.CPUus, esFloor)
		}
		out = append(out, Target{
			Name:   fmt.Sprintf("%s, c=%d", tOverhead, conc),
			Figure: fmt.Sprintf("wsproof %.0f µs (%.0f - floor %.0f)", ours, es.CPUus, floor),
			Limit: fmt.Sprintf("<= Centrifuge %.0f µs (HS256 %.0f - %.1f; ES256 %.0f - %.0f)", theirs,
				chs.CPUus, hsFloor, ces.CPUus, esFloor),
			Pass: ours <= theirs,
			Note: note,
		})
	}
	// Issue 16, target 3: what a device's battery pays. The load generator
	// runs package client; what it spends beyond the plain gorilla client's
	// connect, round trip and close is the authentication's, compared with
	// the client's primitives (verify the challenge, sign the response).
	if cf, ok := r.floor(clientFloorName(keys.ES256)); ok {
		for _, conc := range concs {
			es, pl := r.hs("wsproof", "ES256", false, conc), r.hs("plain", "", false, conc)
			if es == nil || pl == nil || es.ClientUs == 0 || pl.ClientUs == 0 {
				continue
			}
			added := es.ClientUs - pl.ClientUs
			out = append(out, Target{
				Name:   fmt.Sprintf("%s, c=%d", tClientCPU, conc),
				Figure: fmt.Sprintf("%.2f x floor (%.0f µs: %.0f - plain %.0f)", added/cf, added, es.ClientUs, pl.ClientUs),
				Limit:  fmt.Sprintf("<= 1.30 x client floor %.0f µs", cf),
				Pass:   added <= 1.3*cf,
				Note:   "load generator (package client) CPU beyond the plain gorilla client's, per handshake",
			})
		}
	}
	for _, size := range sizes {
		for _, inflight := range inflights {
			w, p := r.frame("wsproof", size, inflight), r.frame("plain", size, inflight)
			if w == nil || p == nil || p.Rate == 0 {
				continue
			}
			ratio := w.Rate / p.Rate
			out = append(out, Target{
				Name:   fmt.Sprintf("%s, %s x%d in flight", tFrames, sizeName(size), inflight),
				Figure: fmt.Sprintf("%.2f x (%.0f vs %.0f msg/s)", ratio, w.Rate, p.Rate),
				Limit:  ">= 0.90 x",
				Pass:   ratio >= 0.9,
				Note:   fmt.Sprintf("server CPU per message %.1f vs %.1f µs", w.CPUus, p.CPUus),
			})
		}
	}
	if rf := r.Refresh; rf != nil {
		var lost, errs int64 = rf.Lost, rf.Errors
		for _, c := range r.Frames {
			lost += c.Lost
			errs += c.Errors
		}
		out = append(out, Target{
			Name:   tLost,
			Figure: fmt.Sprintf("%d lost, %d socket errors, %d refreshes (%d failed) over %d frames", rf.Lost, rf.Errors, rf.Refreshes, rf.RefreshFails, rf.Sent),
			Limit:  "0 lost, at least one refresh per socket",
			Pass:   lost == 0 && errs == 0 && rf.RefreshFails == 0 && rf.Refreshes >= rf.Conns*len(rf.Runs),
			Note:   fmt.Sprintf("all frame runs: %d lost, %d errors", lost, errs),
		})
	}
	if w, p := r.mem("wsproof"), r.mem("plain"); w != nil && p != nil && p.PerConnKiB > 0 {
		out = append(out, Target{
			Name:   fmt.Sprintf("%s (N=%d)", tMemory, w.N),
			Figure: fmt.Sprintf("%.1f KiB = %.2f x plain %.1f KiB", w.PerConnKiB, w.PerConnKiB/p.PerConnKiB, p.PerConnKiB),
			Limit:  fmt.Sprintf("<= 1.25 x (%.1f KiB)", 1.25*p.PerConnKiB),
			Pass:   w.PerConnKiB <= 1.25*p.PerConnKiB && w.Failures == 0,
			Note: fmt.Sprintf("goroutines per socket %.1f vs %.1f; stacks %.1f vs %.1f KiB; heap %.1f vs %.1f KiB",
				w.GoroutinesPer, p.GoroutinesPer, w.StackPerConnKB, p.StackPerConnKB, w.HeapPerConnKiB, p.HeapPerConnKiB),
		})
	}
	if s := r.Scale; s != nil {
		all := true
		for _, run := range s.Runs {
			all = all && run.Opened == s.N && run.Failures == 0
		}
		out = append(out, Target{
			Name:   fmt.Sprintf("%d %s", s.N, tScale),
			Figure: fmt.Sprintf("%d failures over %d runs; %d opened, p99 %.1f ms", s.Failures, len(s.Runs), s.Opened, s.P99ms),
			Limit:  "0 failures",
			Pass:   all,
		})
	}
	out = append(out, deviceTargets(r)...)
	if r.Revoke != nil && len(r.Revoke.Cases) > 0 {
		out = append(out, revokeTargets(r.Revoke)...)
	}
	if r.Room != nil && len(r.Room.Cases) > 0 {
		out = append(out, roomTargets(r.Room)...)
	}
	return out
}

func sizeName(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// captureProfiles profiles the server child for each missed target, in a
// separate run after the measurements (so that profiling does not change
// the figures), and summarizes each profile with go tool pprof -top.
func (b *bench) captureProfiles() {
	missed := func(prefix string) bool {
		for _, t := range b.res.Targets {
			if strings.HasPrefix(t.Name, prefix) && !t.Pass {
				return true
			}
		}
		return false
	}
	conc := 32
	if !contains(b.o.concs, conc) {
		conc = b.o.concs[len(b.o.concs)-1]
	}
	if missed(tHandshakeCPU) || missed(tOverhead) {
		u := wsURL(b.srv.ready.WS, "/ws", false)
		f := wsproofOp(u, b.e.clientConfig(keys.ES256, false))
		b.cpuProfile(tHandshakeCPU, fmt.Sprintf("handshake-wsproof-ES256-c%d", conc), func(d time.Duration) {
			runOps(conc, d, 1_000_000, f)
		})
		p := plainOp(wsURL(b.srv.ready.WS, "/plain", false), gorillaDialer(nil, nil, nil))
		b.cpuProfile(tHandshakeCPU, fmt.Sprintf("handshake-plain-c%d", conc), func(d time.Duration) {
			runOps(conc, d, 1_000_000, p)
		})
	}
	// The client's CPU is the load generator's own: profile this process.
	if missed(tClientCPU) {
		f := wsproofOp(wsURL(b.srv.ready.WS, "/ws", false), b.e.clientConfig(keys.ES256, false))
		b.selfProfile(tClientCPU, fmt.Sprintf("handshake-client-wsproof-ES256-c%d", conc), func(d time.Duration) {
			runOps(conc, d, 1_000_000, f)
		})
		p := plainOp(wsURL(b.srv.ready.WS, "/plain", false), gorillaDialer(nil, nil, nil))
		b.selfProfile(tClientCPU, fmt.Sprintf("handshake-client-plain-c%d", conc), func(d time.Duration) {
			runOps(conc, d, 1_000_000, p)
		})
	}
	// Frames: every cell that missed, both systems.
	for _, size := range b.o.sizes {
		for _, inflight := range b.o.inflights {
			if !missed(fmt.Sprintf("%s, %s x%d in flight", tFrames, sizeName(size), inflight)) {
				continue
			}
			for _, system := range []string{"wsproof", "plain"} {
				conns, err := b.openFrameConns(b.srv, system, b.o.frameConns)
				if err != nil {
					b.res.Errors = append(b.res.Errors, "profile: "+err.Error())
					continue
				}
				b.cpuProfile(tFrames, fmt.Sprintf("frames-%s-%s-x%d", system, strings.ReplaceAll(sizeName(size), " ", ""), inflight), func(d time.Duration) {
					b.runFrames(b.srv, conns, size, inflight, 0, d)
				})
				for _, c := range conns {
					c.close()
				}
			}
		}
	}
	if missed(tMemory) {
		for _, system := range []string{"wsproof", "plain"} {
			for _, kind := range []string{"heap", "goroutine"} {
				f := filepath.Join(b.profDir, fmt.Sprintf("memory-%s-%s.pprof", system, kind))
				if _, err := os.Stat(f); err == nil {
					b.res.Profiles = append(b.res.Profiles, Profile{Target: tMemory, File: f, Top: pprofTop(f, kind == "heap")})
				}
			}
		}
	}
}

// cpuProfile takes a CPU profile of the main server child while load runs.
func (b *bench) cpuProfile(target, name string, load func(time.Duration)) {
	file := filepath.Join(b.profDir, name+"-cpu.pprof")
	secs := int(b.o.profDur / time.Second)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
		defer cancel()
		_, err := b.srv.profile(ctx, "profile", secs, file)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	load(time.Duration(secs) * time.Second)
	if err := <-done; err != nil {
		b.res.Errors = append(b.res.Errors, fmt.Sprintf("profile %s: %v", name, err))
		return
	}
	b.logf("profile %s", file)
	b.res.Profiles = append(b.res.Profiles, Profile{Target: target, File: file, Top: pprofTop(file, false), Shares: pprofShares(file)})
}

// selfProfile takes a CPU profile of this process, the load generator,
// while load runs.
func (b *bench) selfProfile(target, name string, load func(time.Duration)) {
	file := filepath.Join(b.profDir, name+"-cpu.pprof")
	w, err := os.Create(file)
	if err == nil {
		err = pprof.StartCPUProfile(w)
		if err != nil {
			w.Close()
		}
	}
	if err != nil {
		b.res.Errors = append(b.res.Errors, fmt.Sprintf("profile %s: %v", name, err))
		return
	}
	load(b.o.profDur)
	pprof.StopCPUProfile()
	if err := w.Close(); err != nil {
		b.res.Errors = append(b.res.Errors, fmt.Sprintf("profile %s: %v", name, err))
		return
	}
	b.logf("profile %s", file)
	b.res.Profiles = append(b.res.Profiles, Profile{Target: target, File: file, Top: pprofTop(file, false), Shares: pprofShares(file)})
}

// cpuCategory is one group of a CPU profile's samples.
type cpuCategory struct{ name, focus, ignore string }

// cpuCategories group a CPU profile's samples by what they were doing:
// each is a -focus (and optional -ignore) regular expression for go tool
// pprof. A sample counts in every category whose functions are on its
// stack, so the shares overlap (GC inside go-jose counts twice, for
// example).
var cpuCategories = []cpuCategory{
	{"crypto primitives (ECDSA, Ed25519, RSA, AES, SHA)", `^crypto/`, ""},
	{"go-jose, outside the crypto primitives", `go-jose`, `^crypto/`},
	{"wsproof/protocol, outside go-jose and crypto", `wsproof/protocol\.`, `go-jose|^crypto/`},
	{"wsproof/client, outside the protocol and crypto (the client's goroutines, its dial, its close)", `wsproof/client\.`, `wsproof/protocol\.|^crypto/`},
	{"server session goroutines after the handshake (handler and its reads, writer, closer)", `wsproof/server\.\(\*Conn\)\.(serve|writeLoop|closer)$|echoSession`, ""},
	{"server writer goroutine (started when something is queued)", `wsproof/server\.\(\*Conn\)\.writeLoop$`, ""},
	{"reading each message whole (io.ReadAll: the server's readMessage, gorilla's ReadMessage)", `^io\.ReadAll$`, ""},
	{"server: Conn.Send (the copy, the queue, the machine, starting the writer)", `wsproof/server\.\(\*Conn\)\.Send$`, ""},
	{"gorilla echo loop (plain baseline)", `plainEcho`, ""},
	{"syscalls (read, write, accept, close)", `^syscall\.`, ""},
	{"channel operations and select", `^runtime\.(selectgo|chansend|chanrecv)`, ""},
	{"read and write deadlines", `SetReadDeadline|SetWriteDeadline`, ""},
	{"memory allocation and GC", `^runtime\.(mallocgc|gcBgMarkWorker|gcAssistAlloc)`, ""},
	{"goroutine stack growth", `^runtime\.(newstack|copystack)`, ""},
	{"goroutine creation and exit", `^runtime\.(newproc|goexit0)`, ""},
	{"timers (ticker, refresh and expiry timers)", `^time\.(NewTimer|NewTicker|\(\*Timer\)|\(\*Ticker\))`, ""},
	{"Prometheus metrics", `prometheus`, ""},
}

// pprofShares measures every category of a CPU profile.
func pprofShares(file string) []Share { return pprofSharesOf(file, cpuCategories) }

// pprofSharesOf measures the given categories of a CPU profile.
func pprofSharesOf(file string, cats []cpuCategory) []Share {
	var out []Share
	for _, c := range cats {
		// The "accounting for" total read below counts only the nodes
		// pprof shows, and by default it drops those under 0.5% of the
		// samples: -nodefraction=0 keeps them all.
		args := []string{"tool", "pprof", "-top", "-nodefraction=0", "-focus=" + c.focus}
		if c.ignore != "" {
			args = append(args, "-ignore="+c.ignore)
		}
		text, err := exec.Command("go", append(args, file)...).Output()
		if err != nil {
			continue
		}
		var pct float64
		for _, line := range strings.Split(string(text), "\n") {
			// "Showing nodes accounting for 1.60s, 19.44% of 8.23s total"
			if _, rest, ok := strings.Cut(line, "Showing nodes accounting for "); ok {
				if _, p, ok := strings.Cut(rest, ", "); ok {
					fmt.Sscanf(p, "%f%%", &pct)
				}
			}
		}
		if pct >= 0.5 {
			out = append(out, Share{Category: c.name, Percent: pct})
		}
	}
	return out
}

// pprofTop runs go tool pprof -top on a profile, saves the text beside it
// and returns its first lines.
func pprofTop(file string, inuse bool) string {
	args := []string{"tool", "pprof", "-top", "-nodecount=25"}
	if inuse {
		args = append(args, "-sample_index=inuse_space")
	}
	out, err := exec.Command("go", append(args, file)...).Output()
	if err != nil {
		return ""
	}
	os.WriteFile(strings.TrimSuffix(file, ".pprof")+".txt", out, 0o644)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var keep []string
	for _, l := range lines {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) > 22 {
		keep = keep[:22]
	}
	return strings.Join(keep, "\n")
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

const (
	mdBegin = "<!-- wsproof-bench:begin -->"
	mdEnd   = "<!-- wsproof-bench:end -->"
)

// writeMarkdown writes the generated tables into file between the markers,
// keeping the rest of the file; a file without markers gets them appended.
// The denial-of-service tables have markers of their own (mdDoSBegin,
// mdDoSEnd), and each block is rewritten only when the run measured its
// sections, so that "-only dos" leaves the other tables alone and the
// other sections leave the denial-of-service tables alone.
func writeMarkdown(file string, r *Results) error {
	old, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	if slices.ContainsFunc(r.Sections, func(x string) bool { return x != "dos" }) {
		s = replaceBlock(s, mdBegin, mdEnd, markdown(r, file))
	}
	if r.DoS != nil {
		s = replaceBlock(s, mdDoSBegin, mdDoSEnd, dosMarkdown(r, file))
	}
	return os.WriteFile(file, []byte(s), 0o644)
}

// replaceBlock puts body between the begin and end markers of s, or
// appends the markers and body when s has none.
func replaceBlock(s, begin, end, body string) string {
	block := begin + "\n" + body + end + "\n"
	i := strings.Index(s, begin)
	j := -1
	if i >= 0 {
		if k := strings.Index(s[i:], end); k >= 0 {
			j = i + k
		}
	}
	switch {
	case i >= 0 && j > i:
		return s[:i] + block + strings.TrimPrefix(s[j+len(end):], "\n")
	case s == "":
		return "# wsproof benchmarks\n\n" + block
	default:
		return strings.TrimRight(s, "\n") + "\n\n" + block
	}
}

type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var sb strings.Builder
	sb.WriteString("| " + strings.Join(t.head, " | ") + " |\n|")
	for range t.head {
		sb.WriteString("---|")
	}
	sb.WriteString("\n")
	for _, r := range t.rows {
		sb.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return sb.String()
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func rx(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func failText(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var keys []string
	n := 0
	for k, v := range m {
		keys = append(keys, fmt.Sprintf("%s: %d", k, v))
		n += v
	}
	sort.Strings(keys)
	return fmt.Sprintf("%d (%s)", n, strings.Join(keys, ", "))
}

// runHeader is how each generated block starts: the command, the mode and
// the machine of the run whose sections (those for which want holds) the
// block shows, or of each such run when r merges several.
func runHeader(r *Results, want func(section string) bool) string {
	var runs []RunInfo
	for _, p := range r.runs() {
		var ss []string
		for _, s := range p.Sections {
			if want(s) {
				ss = append(ss, s)
			}
		}
		if len(ss) > 0 {
			p.Sections = ss
			runs = append(runs, p)
		}
	}
	one := func(p RunInfo) string {
		m := p.Machine
		return fmt.Sprintf("`%s` (%s mode, medians of %d runs, %s; started %s). ", p.Command, p.Mode, p.Runs, p.Elapsed, p.Started.Format("2006-01-02 15:04 UTC")) +
			fmt.Sprintf("Machine: %s, %d cores, %s, Linux %s, %s RAM; load average %s before, %s after.", m.CPU, m.Cores, m.GoVersion, m.Kernel, m.MemTotal, m.LoadBefore, m.LoadAfter)
	}
	switch len(runs) {
	case 0:
		return ""
	case 1:
		g, machine, _ := strings.Cut(one(runs[0]), " Machine: ")
		return "_Generated by " + strings.TrimSuffix(g, ".") + "._\n\nMachine: " + machine + "\n\n"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "_Merged from %d runs (`-merge`): each section comes from one run, and every ratio compares figures of one run; a ratio between sections of different runs is not printed._\n\n", len(runs))
	for _, p := range runs {
		fmt.Fprintf(&sb, "- %s: generated by %s\n", strings.Join(p.Sections, ", "), one(p))
	}
	sb.WriteString("\n")
	return sb.String()
}

// targetTable renders targets with their result, the note under the figure.
func targetTable(ts []Target) *table {
	t := &table{head: []string{"target", "this run", "limit", "result"}}
	for _, x := range ts {
		res := "**pass**"
		if !x.Pass {
			res = "**MISS**"
		}
		fig := x.Figure
		if x.Note != "" {
			fig += "<br>" + x.Note
		}
		t.add(x.Name, fig, x.Limit, res)
	}
	return t
}

// sharesTable renders the category shares of a CPU profile.
func sharesTable(ss []Share) *table {
	t := &table{head: []string{"category", "% of samples"}}
	for _, s := range ss {
		t.add(s.Category, f1(s.Percent))
	}
	return t
}

// markdown renders every table of the run. file is where it goes, for the
// relative links to the plots.
func markdown(r *Results, file string) string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	plotDir := ""
	if outDir := outDirOf(r); outDir != "" {
		if rel, err := filepath.Rel(filepath.Dir(file), outDir); err == nil {
			plotDir = filepath.ToSlash(rel)
		}
	}
	w("%s", runHeader(r, func(s string) bool { return s != "dos" }))
	if len(r.Targets) > 0 {
		w("### Targets\n\n%s\n", targetTable(r.Targets))
	}

	if len(r.Floors) > 0 {
		w("### Raw-primitive floors (CPU of one thread, this run)\n\n")
		t := &table{head: []string{"floor", "primitives", "CPU µs", "runs"}}
		for _, f := range r.Floors {
			var runs []string
			for _, v := range f.Runs {
				runs = append(runs, f0(v))
			}
			t.add(f.Name, f.Parts, f0(f.CPUus), strings.Join(runs, ", "))
		}
		w("%s\n", t)
	}

	for _, tlsOn := range []bool{false, true} {
		var cells []*HSCell
		for _, c := range r.Handshakes {
			if c.TLS == tlsOn {
				cells = append(cells, c)
			}
		}
		if len(cells) == 0 {
			continue
		}
		if tlsOn {
			w("### Handshakes over TLS 1.3 (channel binding on; X25519MLKEM768, no resumption but in the reconnect rows)\n\n")
		} else {
			w("### Handshakes without TLS\n\n")
		}
		w("Each operation: connect (and authenticate), one 64-byte echo, close. Latency is the connect: TCP + upgrade (+ TLS) + the handshake. ")
		w("\"added\" is server CPU minus the plain upgrade's at the same concurrency; \"/ floor\" divides it by the primitives the handshake cannot avoid.\n\n")
		t := &table{head: []string{"client", "conc", "ops/s", "vs plain", "p50 ms", "p99 ms", "server CPU µs", "vs plain", "added µs", "floor µs", "added / floor", "load gen CPU µs", "failures"}}
		for _, c := range cells {
			pl := r.hs("plain", "", tlsOn, c.Conc)
			row := []string{c.name(), fmt.Sprint(c.Conc), f0(c.Rate), "", f2(c.P50ms), f2(c.P99ms), f0(c.CPUus), "", "", "", "", f0(c.ClientUs), failText(c.Failures)}
			if pl != nil && c != pl {
				row[3], row[7], row[8] = rx(c.Rate, pl.Rate), rx(c.CPUus, pl.CPUus), f0(c.CPUus-pl.CPUus)
			}
			var fl float64
			var ok bool
			switch c.System {
			case "wsproof":
				fl, ok = r.floor("wsproof " + c.Alg)
			case "centrifuge":
				fl, ok = r.floor("JWT " + c.Alg)
			}
			if ok && pl != nil {
				row[9], row[10] = f0(fl), rx(c.CPUus-pl.CPUus, fl)
			}
			if c == pl {
				row[3], row[7] = "1", "1"
			}
			t.add(row...)
		}
		w("%s\n", t)
		if tlsOn {
			w("%s", reconnectText(r))
		}
	}
	if plotDir != "" && len(r.Handshakes) > 0 {
		w("![handshakes per second by concurrency](%s/handshakes.svg)\n\n", plotDir)
		w("![handshake latency CDF](%s/handshake-latency.svg)\n\n", plotDir)
	}

	if len(r.Frames) > 0 {
		w("### Frames: echo on %d sockets\n\n", r.Frames[0].Conns)
		w("Authenticated: package client against server.Server (each message through the session check and the handler); plain: gorilla on both ends. Rate counts echoed messages; latency is send to echo.\n\n")
		t := &table{head: []string{"sockets", "size", "in flight", "msgs/s", "vs plain", "p50 µs", "p99 µs", "server CPU µs/msg", "vs plain", "load gen CPU µs/msg", "sent", "lost", "errors"}}
		for _, c := range r.Frames {
			p := r.frame("plain", c.Size, c.Inflight)
			row := []string{c.System, sizeName(c.Size), fmt.Sprint(c.Inflight), f0(c.Rate), "1", f0(c.P50us), f0(c.P99us), f1(c.CPUus), "1", f1(c.ClientUs), fmt.Sprint(c.Sent), fmt.Sprint(c.Lost), fmt.Sprint(c.Errors)}
			if p != nil && p != c {
				row[4], row[8] = rx(c.Rate, p.Rate), rx(c.CPUus, p.CPUus)
			}
			t.add(row...)
		}
		w("%s\n", t)
		if plotDir != "" {
			w("![frames per second](%s/frames.svg)\n\n![frame latency CDF](%s/frame-latency.svg)\n\n", plotDir, plotDir)
		}
	}
	if rf := r.Refresh; rf != nil {
		w("### Frames while every session refreshes\n\n")
		w("Token lifetime %s, re-challenge %s before expiry; %d sockets, %s messages, %d in flight, %s per run.\n\n", rf.TokenLifetime, rf.RefreshBefore, rf.Conns, sizeName(rf.Size), rf.Inflight, rf.Duration)
		t := &table{head: []string{"msgs/s", "plain msgs/s (same server, same run)", "vs plain", "p99 µs", "refreshes", "refresh failures", "frames sent", "lost", "socket errors"}}
		t.add(f0(rf.Rate), f0(rf.PlainRate), rx(rf.Rate, rf.PlainRate), f0(rf.P99us), fmt.Sprint(rf.Refreshes), fmt.Sprint(rf.RefreshFails), fmt.Sprint(rf.Sent), fmt.Sprint(rf.Lost), fmt.Sprint(rf.Errors))
		w("%s\n", t)
	}
	if len(r.Memory) > 0 {
		w("### Memory: server RSS per idle socket\n\n")
		w("A fresh server child per run; RSS (VmRSS) after a forced GC, growth from the empty server divided by the sockets held.\n\n")
		t := &table{head: []string{"sockets", "N", "RSS KiB/socket", "vs plain", "heap KiB/socket", "stacks KiB/socket", "goroutines/socket", "empty server MiB", "runs (KiB/socket)", "failures"}}
		p := r.mem("plain")
		for _, m := range r.Memory {
			var runs []string
			for _, v := range m.Runs {
				runs = append(runs, f1(v))
			}
			ratio := "1"
			if p != nil && p != m {
				ratio = rx(m.PerConnKiB, p.PerConnKiB)
			}
			t.add(m.System, fmt.Sprint(m.N), f1(m.PerConnKiB), ratio, f1(m.HeapPerConnKiB), f1(m.StackPerConnKB), f1(m.GoroutinesPer), f1(m.BaseRSSMiB), strings.Join(runs, ", "), fmt.Sprint(m.Failures))
		}
		w("%s\n", t)
		if plotDir != "" {
			w("![server RSS by open sockets](%s/memory.svg)\n\n", plotDir)
		}
	}
	if s := r.Scale; s != nil {
		w("### Scale: %d concurrent authenticated sessions\n\n", s.N)
		w("Opened at %.0f per second (ES256, source addresses spread over 127.2.0.0/16), then held for %s; tokens live %s and are re-challenged halfway, so refreshes run throughout.\n\n", s.ArrivalRate, s.Hold, s.TokenLife)
		t := &table{head: []string{"run", "opened", "failures", "arrivals/s", "p50 ms", "p99 ms", "max ms", "peak RSS MiB", "RSS KiB/session", "server CPU s", "cores", "refreshes", "sessions at end"}}
		for i, x := range s.Runs {
			t.add(fmt.Sprint(i+1), fmt.Sprint(x.Opened), fmt.Sprint(x.Failures), f0(x.Achieved), f1(x.P50ms), f1(x.P99ms), f1(x.MaxMs), f0(x.PeakRSSMiB), f1(x.RSSPerSessKiB), f1(x.CPUSeconds), f2(x.CPUCores), fmt.Sprint(x.Refreshes), fmt.Sprint(x.SessionsEnd))
		}
		t.add("**median**", fmt.Sprint(s.Opened), fmt.Sprint(s.Failures)+" (total)", f0(s.Achieved), f1(s.P50ms), f1(s.P99ms), f1(s.MaxMs), f0(s.PeakRSSMiB), f1(s.RSSPerSessKB), f1(s.CPUSeconds), f2(s.CPUCores), fmt.Sprint(s.Refreshes), fmt.Sprint(s.SessionsEnd))
		w("%s\n", t)
		extra := ""
		if p := r.mem("plain"); p != nil && r.sameRun("scale", "memory") {
			extra = fmt.Sprintf(" RSS per session under refresh load is %s the idle plain gorilla socket's (%.1f KiB).", rx(s.RSSPerSessKB, p.PerConnKiB), p.PerConnKiB)
		}
		if c := r.hs("wsproof", "ES256", false, 1); c != nil && r.sameRun("scale", "handshake") {
			extra += fmt.Sprintf(" The p99 handshake latency is %s the unloaded one (ES256, concurrency 1, p99 %.2f ms).", rx(s.P99ms, c.P99ms), c.P99ms)
		}
		w("Failures by kind: %s.%s\n\n", failText(s.FailureKinds), extra)
	}
	if r.Revoke != nil && len(r.Revoke.Cases) > 0 {
		w("%s", revokeMarkdown(r.Revoke, plotDir))
	}
	if r.Room != nil && len(r.Room.Cases) > 0 {
		w("%s", roomMarkdown(r.Room, plotDir))
	}
	if len(r.Device) > 0 {
		w("### Device footprint: a minimal client program\n\n")
		w("`cmd/wsproof-bench/tinyclient` (read a PEM key and the pinned server key set, `client.Dial`, one message, hold the socket) against `cmd/wsproof-bench/tinyplain` (the same on gorilla alone), built with `CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'` for each target, with the GOARM or GOMIPS shown. RSS is measured while connected: natively on linux/amd64; on the other targets under qemu-user emulation, where it is the RSS of the guest's own memory (its binary, heap and stacks, in the guest's address space), with the whole emulator process's RSS (translated code included) beside it. An emulated figure approximates the device's: the page cache, the kernel and the emulator's loader are the host's.\n\n")
		t := &table{head: []string{"target", "program", "size bytes", "vs plain", "RSS KiB connected", "vs plain", "emulator process RSS KiB"}}
		for _, d := range r.Device {
			base := r.deviceBase(d)
			row := []string{d.Target, d.Program, fmt.Sprint(d.SizeBytes), "1", "–", "–", "–"}
			if d.RSSKiB > 0 {
				row[4], row[5] = f0(d.RSSKiB), "1"
				if d.Emulated {
					row[4] += " (under qemu-user emulation)"
					row[6] = f0(d.EmulatorRSSKiB)
				}
			} else if d.Note != "" {
				row[4] = d.Note
			}
			if base != nil && base != d {
				row[3] = rx(float64(d.SizeBytes), float64(base.SizeBytes))
				if d.RSSKiB > 0 && base.RSSKiB > 0 {
					row[5] = rx(d.RSSKiB, base.RSSKiB)
				}
			}
			t.add(row...)
		}
		w("%s\n", t)
	}
	if len(r.DeviceAllocs) > 0 {
		var base *DeviceAllocs
		for _, a := range r.DeviceAllocs {
			if a.Program == devPlain {
				base = a
			}
		}
		w("Heap allocations per handshake, counted natively (linux/amd64) in the load generator's process with `runtime.MemStats`, over %d handshakes per repetition; each is the operation of the handshake section: connect (and authenticate), one 64-byte echo, close.\n\n", r.DeviceAllocs[0].Ops)
		t := &table{head: []string{"program", "allocations", "vs plain", "bytes allocated", "vs plain", "runs (allocations)"}}
		for _, a := range r.DeviceAllocs {
			row := []string{a.Program, f0(a.Allocs), "1", f0(a.Bytes), "1", joinF0(a.Runs)}
			if base != nil && base != a {
				row[2], row[4] = rx(a.Allocs, base.Allocs), rx(a.Bytes, base.Bytes)
			}
			t.add(row...)
		}
		w("%s\n", t)
	}
	if len(r.Profiles) > 0 {
		w("### Profiles for missed targets\n\nOf the server child, and for the client CPU target of this process, the load generator (files named handshake-client-...).\n\n")
		for _, p := range r.Profiles {
			rel := p.File
			if x, err := filepath.Rel(filepath.Dir(file), p.File); err == nil {
				rel = filepath.ToSlash(x)
			}
			if len(p.Shares) > 0 {
				w("`%s` (%s; `go tool pprof -top` in the `.txt` beside it). Share of CPU samples by what they were doing (shares overlap):\n\n", rel, p.Target)
				w("%s\n", sharesTable(p.Shares))
				continue
			}
			w("`%s` (%s):\n\n```\n%s\n```\n\n", rel, p.Target, p.Top)
		}
	}
	if len(r.Errors) > 0 {
		w("Errors during the run: %s\n\n", strings.Join(r.Errors, "; "))
	}
	return sb.String()
}

// outDirOf recovers -out from the command line recorded in the results.
func outDirOf(r *Results) string {
	f := strings.Fields(r.Command)
	for i := range f {
		if f[i] == "-out" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// deviceBase is the plain gorilla build of d's target.
func (r *Results) deviceBase(d *DeviceItem) *DeviceItem {
	for _, x := range r.Device {
		if x.Program == devPlain && x.Target == d.Target {
			return x
		}
	}
	return nil
}

// deviceTargets are issue 15's footprint targets, judged on the worst
// target: the client program at most 1.15 x the plain one's size, and at
// most 1.2 x its RSS while connected.
func deviceTargets(r *Results) []Target {
	var out []Target
	type ratio struct {
		x    float64
		what string
	}
	var sizes, rss []ratio
	for _, d := range r.Device {
		base := r.deviceBase(d)
		if d.Program != devClient || base == nil || base.SizeBytes == 0 {
			continue
		}
		sizes = append(sizes, ratio{float64(d.SizeBytes) / float64(base.SizeBytes),
			fmt.Sprintf("%s: %d vs %d bytes", d.Target, d.SizeBytes, base.SizeBytes)})
		if d.RSSKiB > 0 && base.RSSKiB > 0 {
			how := "natively"
			if d.Emulated {
				how = "under qemu-user emulation"
			}
			rss = append(rss, ratio{d.RSSKiB / base.RSSKiB, fmt.Sprintf("%s, %s: %.0f vs %.0f KiB", d.Target, how, d.RSSKiB, base.RSSKiB)})
		}
	}
	judge := func(name string, rs []ratio, limit float64) {
		if len(rs) == 0 {
			return
		}
		worst, best := rs[0], rs[0]
		for _, x := range rs {
			if x.x > worst.x {
				worst = x
			}
			if x.x < best.x {
				best = x
			}
		}
		out = append(out, Target{
			Name:   name,
			Figure: fmt.Sprintf("%.2f x at worst (%s)", worst.x, worst.what),
			Limit:  fmt.Sprintf("<= %.2f x on every target", limit),
			Pass:   worst.x <= limit,
			Note:   fmt.Sprintf("best %.2f x (%s); %d targets", best.x, best.what, len(rs)),
		})
	}
	judge(tDeviceSize, sizes, 1.15)
	judge(tDeviceRSS, rss, 1.2)
	return out
}

// joinF0 lists figures without decimals.
func joinF0(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = f0(x)
	}
	return strings.Join(s, ", ")
}

// reconnectText compares, at each concurrency, the server's CPU per
// reconnect that resumes its TLS session with the same handshake over a full
// TLS handshake (issue 16, target 5): what a fleet's reconnect storm costs.
func reconnectText(r *Results) string {
	var b strings.Builder
	for _, c := range r.Handshakes {
		if !c.Resumed {
			continue
		}
		full := r.hs(c.System, c.Alg, true, c.Conc)
		if full == nil {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("Reconnect over TLS: the client resumes its TLS 1.3 session (package client does by default) and authenticates afresh, " +
				"channel binding on; server CPU per reconnect against the same handshake over a full TLS handshake:\n\n")
		}
		fmt.Fprintf(&b, "- %s at concurrency %d: %s µs resumed, %s µs full, %s; %s/s against %s/s (%.1f%% of its connects resumed).\n",
			c.System+" "+c.Alg, c.Conc, f0(c.CPUus), f0(full.CPUus), rx(c.CPUus, full.CPUus), f0(c.Rate), f0(full.Rate), 100*c.ResumedShare)
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

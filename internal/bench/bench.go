// Package bench is the harness behind the wsproof-bench command
// (cmd/wsproof-bench, a thin wrapper around Main). It measures wsproof's
// server and client against their baselines, each measured in the same run
// on the same machine and printed beside it as a ratio (issue 5,
// BENCHMARKS.md):
//
//   - handshakes: rate, p50/p99 latency and server CPU per handshake at
//     several concurrencies, for every client algorithm, with and without
//     TLS 1.3; beside a plain gorilla upgrade on the same server, the
//     raw-primitive floor and Centrifuge's JWT connect;
//   - frames: echo rate and latency on authenticated versus plain gorilla
//     sockets, and a run during which every session refreshes (no frame may
//     be lost);
//   - memory: server RSS per idle authenticated socket versus plain gorilla;
//   - scale: 10,000 sessions opened at a steady rate with refreshes running;
//   - device: size, RSS while connected and heap allocations per handshake
//     of a minimal client program beside the same on plain gorilla, for
//     linux/amd64 and every device target, run under qemu-user emulation
//     (device.go);
//   - dos: legitimate handshakes and authenticated sessions while idle
//     unauthenticated sockets and a flood of bad handshakes attack the
//     server with its default limits (dos.go; the attacker is a third
//     process, dos_attack.go);
//   - revoke: 1,000 live sessions, 300 of which never read while the server
//     keeps sending to them, revoked by renaming a new registry file over
//     the one the server watches: when each socket ends, after the rename,
//     as the load side and as the server see it, and how many messages
//     reach the application after the server's decision; beside the same
//     run with every session reading; with the server's send buffer at
//     8 KiB (its writes to the non-readers blocked) and at the kernel's
//     default (revoke.go, the server's application in apps.go);
//   - room: a broadcast room of 50 reading sessions, one broadcasting every
//     20 ms, beside 2 sessions that never read: the readers' broadcast
//     latency beside the same room without them, and when and how the two
//     were closed, with both send buffers (room.go).
//
// The server runs in a child process (the running program, started again
// with the hidden "server" subcommand, which Main routes to the child; the
// Centrifuge harness is its own module in cmd/wsproof-bench/centrifuge),
// whose CPU time comes from its own getrusage. Everything listens on and
// dials 127.0.0.0/8 only, and every load loop is bounded in time and count.
//
// Usage:
//
//	go run ./cmd/wsproof-bench [-quick] [-out DIR] [-md FILE] [-only LIST] [-skip LIST] [-merge FILE]
//
// Run it from the repository. -quick is the smoke version CI runs (a minute),
// and it fails when a revoked socket closes later than the spec's second, a
// message is delivered after the revocation decision, or the room's p99
// latency reaches 250 ms; without it the full run takes about 35 minutes on
// two cores, and those are targets like the others. -merge keeps the
// sections a run does not measure from an earlier results.json, so that
// "-only frames,memory -merge docs/bench/results.json -out docs/bench -md
// BENCHMARKS.md" rewrites those sections' tables and plots and keeps the
// rest.
package bench

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/wsproof/wsproof/keys"
)

const usage = `Usage: wsproof-bench [flags]

Measures wsproof beside its baselines (plain gorilla/websocket on the same
server, the raw cryptographic floor, Centrifuge's JWT connect; for the
revocation and the broadcast room, the same run with every session
reading), in separate server and load-generator processes on loopback.
Figures are medians of -runs repetitions; the log shows every repetition.

Flags:
    -quick         smoke run: small counts, one repetition, about a minute;
                   fails if the server closes a revoked socket later than 1 s
                   after the registry change (or the load side sees it later,
                   but for non-readers behind the kernel's own send buffer),
                   a message is delivered after the revocation decision, or
                   the room's p99 reaches 250 ms
    -out DIR       write DIR/results.json and the SVG plots
    -md FILE       write the Markdown tables to FILE, between the markers
                   <!-- wsproof-bench:begin --> and <!-- wsproof-bench:end -->
                   when FILE has them (the rest of FILE is kept)
    -only LIST     run only these sections (comma-separated)
    -skip LIST     skip these sections
                   sections: handshake, centrifuge, frames, refresh, memory,
                   scale, device, dos, revoke, room
    -merge FILE    merge this run into the results.json FILE of an earlier
                   run: the sections measured now replace FILE's, the others
                   are kept, each with the command and machine of its run;
                   -out and -md then get the merged results
    -runs N        repetitions of each measurement (default 3; quick 1)
    -conns N       sockets of the memory and scale runs (default 10000; quick 200)
    -cross         cross-build the device programs for every device target
                   (internal/devtarget: linux/arm GOARM=6 and 7, arm64, mipsle
                   and mips GOMIPS=softfloat, riscv64) and run them under
                   qemu-user emulation (default on; off with -quick)
    -profile       capture pprof profiles from the server child for each
                   missed target, into DIR/profiles (default on with -out,
                   off with -quick)
    -from FILE     do not measure: render -out and -md from a results.json
                   written by an earlier run
    -v             log every repetition to stderr (default on)
`

var allSections = []string{"handshake", "centrifuge", "frames", "refresh", "memory", "scale", "device", "dos", "revoke", "room"}

// options are the sizes of one run.
type options struct {
	quick    bool
	args     []string // the command line's flags, recorded with the results
	out, md  string
	from     string
	merge    string // a results.json the run's sections are merged into
	sections map[string]bool
	verbose  bool
	cross    bool
	profile  bool
	runs     int

	concs    []int
	algs     []keys.Algorithm
	tlsModes []bool
	hsDur    time.Duration
	hsWarm   time.Duration
	hsMax    int
	settle   time.Duration

	floorIters int

	frameConns int
	sizes      []int
	inflights  []int
	frameWarm  time.Duration
	frameDur   time.Duration
	drain      time.Duration

	refreshLifetime time.Duration
	refreshBefore   time.Duration
	refreshDur      time.Duration

	memN      int
	memSettle time.Duration

	scaleN        int
	scaleRate     float64
	scaleHold     time.Duration
	scaleLifetime time.Duration
	scaleRuns     int

	profDur time.Duration

	dos    dosOptions
	revoke revokeOptions
	room   roomOptions
}

func defaultOptions(quick bool) *options {
	o := &options{
		quick: quick, verbose: true, runs: 3, cross: true,
		concs: []int{1, 32, 256}, algs: benchAlgs, tlsModes: []bool{false, true},
		hsDur: 3 * time.Second, hsWarm: 300 * time.Millisecond, hsMax: 30000, settle: 150 * time.Millisecond,
		floorIters: 300,
		frameConns: 64, sizes: []int{64, 4096}, inflights: []int{1, 16},
		frameWarm: 500 * time.Millisecond, frameDur: 3 * time.Second, drain: 5 * time.Second,
		refreshLifetime: 3 * time.Second, refreshBefore: 1500 * time.Millisecond, refreshDur: 8 * time.Second,
		memN: 10000, memSettle: time.Second,
		scaleN: 10000, scaleRate: 400, scaleHold: 20 * time.Second, scaleLifetime: 30 * time.Second, scaleRuns: 3,
		profDur: 10 * time.Second,
	}
	o.dos = defaultDoSOptions(quick)
	o.revoke = defaultRevokeOptions(quick)
	o.room = defaultRoomOptions(quick)
	if quick {
		o.runs, o.cross = 1, false
		o.concs = []int{1, 16}
		o.hsDur, o.hsWarm, o.hsMax, o.settle = 150*time.Millisecond, 30*time.Millisecond, 300, 30*time.Millisecond
		o.floorIters = 20
		o.frameWarm, o.frameDur, o.drain = 100*time.Millisecond, 300*time.Millisecond, 3*time.Second
		o.refreshLifetime, o.refreshBefore, o.refreshDur = 2*time.Second, time.Second, 2500*time.Millisecond
		o.memN, o.memSettle = 200, 100*time.Millisecond
		// Tokens of 4 s re-challenged 2 s before expiry: a loaded CI machine
		// (the smoke run shares it with every other package's tests) has
		// seen second-long handshakes, which a 1 s window does not survive.
		o.scaleN, o.scaleRate, o.scaleHold, o.scaleLifetime, o.scaleRuns = 200, 400, 3*time.Second, 4*time.Second, 1
		o.profDur = 2 * time.Second
	}
	return o
}

// parseOptions reads the command line.
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("wsproof-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	quick := fs.Bool("quick", false, "")
	out := fs.String("out", "", "")
	md := fs.String("md", "", "")
	only := fs.String("only", "", "")
	skip := fs.String("skip", "", "")
	runs := fs.Int("runs", 0, "")
	conns := fs.Int("conns", 0, "")
	cross := fs.String("cross", "", "")
	profile := fs.String("profile", "", "")
	verbose := fs.Bool("v", true, "")
	from := fs.String("from", "", "")
	merge := fs.String("merge", "", "")
	// -cross and -profile are booleans with mode-dependent defaults.
	for i, a := range args {
		for _, name := range []string{"cross", "profile"} {
			if a == "-"+name || a == "--"+name {
				args[i] = a + "=true"
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o := defaultOptions(*quick)
	o.out, o.md, o.verbose, o.from, o.merge = *out, *md, *verbose, *from, *merge
	if o.merge != "" && o.from != "" {
		return nil, errors.New("-merge and -from do not go together: -from measures nothing")
	}
	o.args = args
	o.profile = o.out != "" && !o.quick
	if *runs > 0 {
		o.runs = *runs
		o.scaleRuns = min(o.scaleRuns, *runs)
		if !o.quick {
			o.scaleRuns = *runs
		}
	}
	if *conns > 0 {
		o.memN, o.scaleN = *conns, *conns
	}
	for name, p := range map[string]*bool{"cross": &o.cross, "profile": &o.profile} {
		switch v := map[string]string{"cross": *cross, "profile": *profile}[name]; v {
		case "":
		case "true", "1":
			*p = true
		case "false", "0":
			*p = false
		default:
			return nil, fmt.Errorf("-%s=%s: want true or false", name, v)
		}
	}
	o.sections = map[string]bool{}
	list := func(s string) ([]string, error) {
		var out []string
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			if !slices.Contains(allSections, f) {
				return nil, fmt.Errorf("unknown section %q (have %s)", f, strings.Join(allSections, ", "))
			}
			out = append(out, f)
		}
		return out, nil
	}
	onlyList, err := list(*only)
	if err != nil {
		return nil, err
	}
	skipList, err := list(*skip)
	if err != nil {
		return nil, err
	}
	for _, s := range allSections {
		if (len(onlyList) == 0 || slices.Contains(onlyList, s)) && !slices.Contains(skipList, s) {
			o.sections[s] = true
		}
	}
	return o, nil
}

// bench is one run in progress.
type bench struct {
	o       *options
	e       *env
	res     *Results
	srv     *child // the main server child: handshakes, frames, device
	cent    *child // the Centrifuge harness, or nil
	src     *sources
	profDir string
	logw    io.Writer
}

func (b *bench) logf(format string, args ...any) {
	if b.o.verbose {
		fmt.Fprintf(b.logw, format+"\n", args...)
	}
}

// Main runs the wsproof-bench command with the arguments after the program
// name and returns its exit status: 0 on success (also for -h), 2 for a bad
// command line, 1 when the run fails. A process started as a child of a
// run (the server, or the attacker of the denial-of-service runs: the
// program re-executed from os.Executable with childEnv set) runs that
// child instead, so the command's main must hand every invocation here.
func Main(args []string, stdout, stderr io.Writer) int {
	if os.Getenv(childEnv) == "1" || (len(args) > 0 && (args[0] == "server" || args[0] == attackSubcommand)) {
		if err := childMain(args); err != nil {
			fmt.Fprintln(stderr, "wsproof-bench child:", err)
			return 1
		}
		return 0
	}
	o, err := parseOptions(args, stderr)
	if err == flag.ErrHelp {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "wsproof-bench:", err)
		return 2
	}
	run := run
	if o.from != "" {
		run = render
	}
	res, err := run(o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "wsproof-bench:", err)
		return 1
	}
	targets := res.Targets
	if res.DoS != nil {
		targets = append(targets, res.DoS.Targets...)
	}
	for _, t := range targets {
		fmt.Fprintf(stdout, "%-4s %s: %s (limit %s)\n", passWord(t.Pass), t.Name, t.Figure, t.Limit)
	}
	return 0
}

// childMain runs a child process: the server ("server", the default) or
// the attacker of the denial-of-service runs ("dos-attack").
func childMain(args []string) error {
	if len(args) > 0 && args[0] == attackSubcommand {
		return attackChild(args[1:])
	}
	if len(args) > 0 && args[0] == "server" {
		args = args[1:]
	}
	return serverChild(args)
}

// run performs every selected section and writes the outputs.
func run(o *options, stdout, stderr io.Writer) (*Results, error) {
	start := time.Now()
	limit, err := raiseNofile()
	if err != nil {
		return nil, err
	}
	if need := uint64(max(o.memN, o.scaleN) + 1024); (o.sections["memory"] || o.sections["scale"]) && limit < need {
		return nil, fmt.Errorf("open-file limit %d is below the %d the memory and scale runs need: raise the hard limit (ulimit -Hn) or use -conns", limit, need)
	}
	if need := uint64(o.revoke.n + 1024); o.sections["revoke"] && limit < need {
		return nil, fmt.Errorf("open-file limit %d is below the %d the revocation run needs: raise the hard limit (ulimit -Hn)", limit, need)
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wsproof-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	logw := io.Discard
	if o.verbose {
		logw = stderr
	}
	e, err := newEnv(o, dir, logw)
	if err != nil {
		return nil, err
	}
	e.root = root
	res := &Results{Started: start.UTC(), Mode: map[bool]string{true: "quick", false: "full"}[o.quick], Runs: o.runs,
		Command: commandLine(o), Machine: machine()}
	for _, s := range allSections {
		if o.sections[s] {
			res.Sections = append(res.Sections, s)
		}
	}
	b := &bench{o: o, e: e, res: res, src: &sources{n: 64}, logw: logw}
	if o.out != "" && o.profile {
		b.profDir = filepath.Join(o.out, "profiles")
	}
	b.logf("wsproof-bench: %s run, %d repetition(s), sections %s; %s, %d cores, %s",
		res.Mode, o.runs, strings.Join(res.Sections, ","), res.Machine.CPU, res.Machine.Cores, res.Machine.GoVersion)
	if b.srv, err = e.startServer("main", 0, 0); err != nil {
		return nil, err
	}
	defer b.srv.stop()
	if o.sections["handshake"] && o.sections["centrifuge"] {
		if b.cent, err = e.startCentrifuge(); err != nil {
			return nil, err
		}
		defer b.cent.stop()
	}
	steps := []struct {
		name string
		f    func() error
	}{
		{"handshake", b.handshakes}, {"frames", b.frames}, {"refresh", b.refresh},
		{"memory", b.memory}, {"scale", b.scale}, {"device", b.device}, {"dos", b.dos},
		{"revoke", b.revoke}, {"room", b.room},
	}
	for _, s := range steps {
		if !o.sections[s.name] {
			continue
		}
		t0 := time.Now()
		if err := s.f(); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		b.logf("%s done in %s", s.name, time.Since(t0).Round(time.Second))
	}
	res.Targets = evaluate(res)
	if b.profDir != "" {
		b.captureProfiles()
	}
	res.Machine.LoadAfter = loadavg()
	res.Elapsed = time.Since(start).Round(time.Second).String()
	if o.merge != "" {
		old, err := readResults(o.merge)
		if err != nil {
			return nil, fmt.Errorf("-merge: %w", err)
		}
		res = mergeResults(old, res)
		res.Targets = evaluate(res)
		b.logf("merged into %s: %s", o.merge, runsText(res))
	}
	if o.out != "" {
		if err := writeOutputs(o.out, res); err != nil {
			return nil, err
		}
	}
	if o.md != "" {
		if err := writeMarkdown(o.md, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// render writes -out and -md from the results of an earlier run.
func render(o *options, stdout, stderr io.Writer) (*Results, error) {
	res, err := readResults(o.from)
	if err != nil {
		return nil, err
	}
	for i, p := range res.Profiles {
		if strings.HasSuffix(p.File, "-cpu.pprof") && len(p.Shares) == 0 {
			res.Profiles[i].Shares = pprofShares(p.File)
		}
	}
	if o.out != "" {
		if err := writeOutputs(o.out, res); err != nil {
			return nil, err
		}
	}
	if o.md != "" {
		if err := writeMarkdown(o.md, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// readResults reads a results.json.
func readResults(file string) (*Results, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	res := &Results{}
	if err := json.Unmarshal(data, res); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return res, nil
}

// runsText lists which run measured which sections.
func runsText(r *Results) string {
	var parts []string
	for _, p := range r.runs() {
		parts = append(parts, fmt.Sprintf("%s from %s (%s)", strings.Join(p.Sections, ","), p.Started.Format("2006-01-02 15:04 UTC"), p.Command))
	}
	return strings.Join(parts, "; ")
}

// commandLine is the command that produced a run, as recorded with its
// results: the flags that change what is measured or where it goes, in
// the order given (not -v).
func commandLine(o *options) string {
	args := []string{"go run ./cmd/wsproof-bench"}
	if o.args == nil { // options built without parseOptions
		if o.quick {
			args = append(args, "-quick")
		}
		if o.out != "" {
			args = append(args, "-out", filepath.ToSlash(o.out))
		}
		if o.md != "" {
			args = append(args, "-md", filepath.ToSlash(o.md))
		}
		return strings.Join(args, " ")
	}
	for i := 0; i < len(o.args); i++ {
		a := o.args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "v" {
			continue
		}
		args = append(args, a)
		// A flag with its value in the next argument (booleans take theirs
		// with "=").
		if !hasValue && name != "quick" && i+1 < len(o.args) {
			i++
			args = append(args, filepath.ToSlash(o.args[i]))
		}
	}
	return strings.Join(args, " ")
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), LoadBefore: loadavg()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		m.MemTotal = strings.Join(strings.Fields(strings.TrimPrefix(line, "MemTotal:")), " ")
	}
	return m
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// writeOutputs writes results.json and the plots into dir.
func writeOutputs(dir string, res *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	for name, svg := range plots(res) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func passWord(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

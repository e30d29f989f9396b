package bench

import (
	"sort"
	"strings"
	"time"
)

// Results is everything one run measured; -out writes it as results.json.
// Each figure is the median over Runs repetitions; Runs fields keep every
// repetition.
type Results struct {
	Started  time.Time `json:"started"`
	Mode     string    `json:"mode"` // "quick" or "full"
	Runs     int       `json:"runs"`
	Command  string    `json:"command"`
	Machine  Machine   `json:"machine"`
	Sections []string  `json:"sections"`

	Floors     []Floor        `json:"floors,omitempty"`
	Handshakes []*HSCell      `json:"handshakes,omitempty"`
	Frames     []*FrameCell   `json:"frames,omitempty"`
	Refresh    *RefreshResult `json:"refresh,omitempty"`
	Memory     []*MemResult   `json:"memory,omitempty"`
	Scale      *ScaleResult   `json:"scale,omitempty"`
	Device     []*DeviceItem  `json:"device,omitempty"`
	// DeviceAllocs belongs to the device section.
	DeviceAllocs []*DeviceAllocs `json:"device_allocs,omitempty"`
	DoS          *DoSResult      `json:"dos,omitempty"`
	Revoke       *RevokeResult   `json:"revoke,omitempty"`
	Room         *RoomResult     `json:"room,omitempty"`
	Targets      []Target        `json:"targets,omitempty"`
	Profiles     []Profile       `json:"profiles,omitempty"`
	Errors       []string        `json:"errors,omitempty"`
	Elapsed      string          `json:"elapsed"`

	// Provenance, when set, says which run measured which sections: the
	// results of a run merged (-merge) into those of earlier runs. The
	// fields above then describe the latest run, and Sections lists every
	// section held.
	Provenance []RunInfo `json:"provenance,omitempty"`
}

// RunInfo describes one run whose results a merged file holds.
type RunInfo struct {
	Sections []string  `json:"sections"`
	Command  string    `json:"command"`
	Mode     string    `json:"mode"`
	Runs     int       `json:"runs"`
	Started  time.Time `json:"started"`
	Elapsed  string    `json:"elapsed"`
	Machine  Machine   `json:"machine"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	GoVersion  string `json:"go_version"`
	Kernel     string `json:"kernel"`
	MemTotal   string `json:"mem_total"`
	LoadBefore string `json:"load_before"` // /proc/loadavg at the start
	LoadAfter  string `json:"load_after"`
}

// Floor is a raw-primitive floor, CPU µs per handshake.
type Floor struct {
	Name  string    `json:"name"` // "wsproof ES256", "JWT HS256", ...
	Parts string    `json:"parts"`
	CPUus float64   `json:"cpu_us"`
	Runs  []float64 `json:"runs"`
}

// HSCell is one handshake measurement: system, client algorithm, TLS and
// concurrency.
type HSCell struct {
	System  string `json:"system"` // "plain", "wsproof", "centrifuge"
	Alg     string `json:"alg"`    // client algorithm; "" for plain; "anon", "HS256", "ES256" for centrifuge
	TLS     bool   `json:"tls"`
	Resumed bool   `json:"tls_resumed,omitempty"` // each connect resumes a TLS session (a reconnect)
	// ResumedShare is the share of a reconnect cell's TLS connects, warm-ups
	// included, that resumed a session.
	ResumedShare float64        `json:"tls_resumed_share,omitempty"`
	Conc         int            `json:"concurrency"`
	Rate         float64        `json:"rate_per_s"`
	P50ms        float64        `json:"p50_ms"`
	P99ms        float64        `json:"p99_ms"`
	CPUus        float64        `json:"server_cpu_us"` // server CPU per operation
	ClientUs     float64        `json:"client_cpu_us"` // load generator CPU per operation
	Ops          int            `json:"ops"`
	Failures     map[string]int `json:"failures,omitempty"`
	Runs         []HSRun        `json:"runs"`
	CDF          []float64      `json:"cdf_ms,omitempty"` // latency at each percentile 0..100, all runs merged

	lat []time.Duration
}

// HSRun is one repetition of a handshake cell.
type HSRun struct {
	Rate     float64 `json:"rate_per_s"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	CPUus    float64 `json:"server_cpu_us"`
	ClientUs float64 `json:"client_cpu_us"`
	Ops      int     `json:"ops"`
	Failures int     `json:"failures"`
}

func (c *HSCell) name() string {
	switch c.System {
	case "plain":
		return "plain gorilla"
	case "centrifuge":
		if c.Alg == "anon" {
			return "Centrifuge, no token"
		}
		return "Centrifuge JWT " + c.Alg
	}
	if c.Resumed {
		return "wsproof " + c.Alg + ", reconnect (TLS resumed)"
	}
	return "wsproof " + c.Alg
}

// FrameCell is one frame measurement.
type FrameCell struct {
	System   string    `json:"system"` // "plain" or "wsproof"
	Size     int       `json:"size"`
	Inflight int       `json:"inflight"`
	Conns    int       `json:"conns"`
	Rate     float64   `json:"msgs_per_s"`
	P50us    float64   `json:"p50_us"`
	P99us    float64   `json:"p99_us"`
	CPUus    float64   `json:"server_cpu_us_per_msg"`
	ClientUs float64   `json:"client_cpu_us_per_msg"`
	Sent     int64     `json:"sent"`
	Received int64     `json:"received"`
	Lost     int64     `json:"lost"`
	Errors   int64     `json:"errors"`
	Runs     []FrRun   `json:"runs"`
	CDF      []float64 `json:"cdf_us,omitempty"`

	lat []time.Duration
}

// FrRun is one repetition of a frame cell.
type FrRun struct {
	Rate     float64 `json:"msgs_per_s"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	CPUus    float64 `json:"server_cpu_us_per_msg"`
	ClientUs float64 `json:"client_cpu_us_per_msg"`
	Lost     int64   `json:"lost"`
}

// RefreshResult is the frame run during which every session refreshes.
type RefreshResult struct {
	TokenLifetime string  `json:"token_lifetime"`
	RefreshBefore string  `json:"refresh_before"`
	Duration      string  `json:"duration"`
	Conns         int     `json:"conns"`
	Size          int     `json:"size"`
	Inflight      int     `json:"inflight"`
	Rate          float64 `json:"msgs_per_s"`
	PlainRate     float64 `json:"plain_msgs_per_s"` // the same cell without auth, same repetition
	P99us         float64 `json:"p99_us"`
	Refreshes     int     `json:"refreshes"`        // server-side successful refreshes, all runs
	RefreshFails  int     `json:"refresh_failures"` // server-side refresh failures, all runs
	Sent          int64   `json:"sent"`             // all runs
	Received      int64   `json:"received"`         // all runs
	Lost          int64   `json:"lost"`             // all runs
	Errors        int64   `json:"errors"`           // socket errors, all runs
	Runs          []FrRun `json:"runs"`
}

// MemResult is the memory of idle connections of one kind.
type MemResult struct {
	System         string      `json:"system"` // "plain" or "wsproof"
	N              int         `json:"n"`
	PerConnKiB     float64     `json:"rss_per_conn_kib"`
	HeapPerConnKiB float64     `json:"heap_per_conn_kib"`
	StackPerConnKB float64     `json:"stack_per_conn_kib"`
	GoroutinesPer  float64     `json:"goroutines_per_conn"`
	BaseRSSMiB     float64     `json:"base_rss_mib"`
	Failures       int         `json:"failures"`
	Runs           []float64   `json:"runs"`
	Points         [][]float64 `json:"points"` // [connections, RSS delta MiB] of the median run
}

// ScaleResult is the 10,000-session run.
type ScaleResult struct {
	N            int            `json:"n"`
	ArrivalRate  float64        `json:"arrival_rate_per_s"`
	Achieved     float64        `json:"achieved_rate_per_s"`
	Hold         string         `json:"hold"`
	TokenLife    string         `json:"token_lifetime"`
	Opened       int            `json:"opened"`
	Failures     int            `json:"failures"`
	FailureKinds map[string]int `json:"failure_kinds,omitempty"`
	P50ms        float64        `json:"p50_ms"`
	P99ms        float64        `json:"p99_ms"`
	MaxMs        float64        `json:"max_ms"`
	PeakRSSMiB   float64        `json:"peak_rss_mib"`
	RSSPerSessKB float64        `json:"rss_per_session_kib"`
	CPUSeconds   float64        `json:"server_cpu_s"`
	CPUCores     float64        `json:"server_cpu_cores"` // average over the run
	Refreshes    int            `json:"refreshes"`
	SessionsEnd  int            `json:"sessions_at_end"`
	Runs         []ScaleRun     `json:"runs"`
	CDF          []float64      `json:"cdf_ms,omitempty"`
}

// ScaleRun is one repetition of the scale run.
type ScaleRun struct {
	Opened        int     `json:"opened"`
	Failures      int     `json:"failures"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	MaxMs         float64 `json:"max_ms"`
	Achieved      float64 `json:"achieved_rate_per_s"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	RSSPerSessKiB float64 `json:"rss_per_session_kib"`
	CPUSeconds    float64 `json:"server_cpu_s"`
	CPUCores      float64 `json:"server_cpu_cores"`
	Refreshes     int     `json:"refreshes"`
	SessionsEnd   int     `json:"sessions_at_end"`
	Seconds       float64 `json:"seconds"`
}

// DeviceItem is one build of a minimal client program.
type DeviceItem struct {
	Program   string    `json:"program"` // "wsproof client" or "plain gorilla"
	Target    string    `json:"target"`  // GOOS/GOARCH, GOARM or GOMIPS
	SizeBytes int64     `json:"size_bytes"`
	RSSKiB    float64   `json:"rss_kib,omitempty"` // while connected: the process's, or under emulation the guest's
	Runs      []float64 `json:"rss_runs,omitempty"`
	// Emulated: the build ran under qemu-user; EmulatorRSSKiB is then the
	// whole emulator process's RSS, of which RSSKiB is the guest's share.
	Emulated       bool      `json:"emulated,omitempty"`
	EmulatorRSSKiB float64   `json:"emulator_rss_kib,omitempty"`
	EmulatorRuns   []float64 `json:"emulator_rss_runs,omitempty"`
	Note           string    `json:"note,omitempty"`
}

// DeviceAllocs is the heap allocation count of one handshake operation
// (connect and authenticate, one 64-byte echo, close), counted natively.
type DeviceAllocs struct {
	Program   string    `json:"program"`
	Ops       int       `json:"ops"`    // handshakes per repetition
	Allocs    float64   `json:"allocs"` // median per handshake
	Bytes     float64   `json:"bytes"`
	Runs      []float64 `json:"allocs_runs"`
	BytesRuns []float64 `json:"bytes_runs"`
}

// RevokeResult is the revocation of many live sessions by an edit of the
// server's registry file (revoke.go).
type RevokeResult struct {
	N             int    `json:"n"`
	Slow          int    `json:"slow"` // sessions that never read, in the measured cases
	SendEvery     string `json:"send_every"`
	Burst         int    `json:"burst"`
	PushSize      int    `json:"push_size"`
	PushEvery     string `json:"push_every"`
	Rcvbuf        int    `json:"rcvbuf"`
	SndBuf        int    `json:"sndbuf"`
	WatchInterval string `json:"watch_interval"`
	WriteTimeout  string `json:"write_timeout"`
	Wait          string `json:"wait"`
	// Cases are the baseline (every session reads), then the measured
	// cases (Slow never read), each with the server's send buffer of its
	// own.
	Cases []*RevokeCase `json:"cases"`
}

// RevokeCase is one configuration of the revocation, over every run.
// Times are ms after the rename of the registry file; the figures are
// medians of the runs, the counts sums.
type RevokeCase struct {
	Name   string `json:"name"`
	Slow   int    `json:"slow"`
	SndBuf int    `json:"sndbuf"` // SO_SNDBUF of the server's sockets; 0: the kernel's autotuning
	// LastMs is when the last socket ended as the load side saw it.
	LastMs  float64 `json:"last_close_ms"`
	WorstMs float64 `json:"worst_run_last_close_ms"`
	// LastAfterWatchMs is LastMs from when Watch reported the change
	// rather than from the rename: without the phase of Watch's poll,
	// which puts anything from 0 to its interval before it.
	LastAfterWatchMs float64 `json:"last_close_after_watch_ms"`
	ReadingP50Ms     float64 `json:"reading_p50_ms"`
	ReadingLastMs    float64 `json:"reading_last_ms"`
	SlowP50Ms        float64 `json:"slow_p50_ms,omitempty"`
	SlowLastMs       float64 `json:"slow_last_ms,omitempty"`
	// ServerMs is the spec's figure, at the server: the last socket whose
	// Close frame was written in full or whose connection was dropped,
	// whichever came first; ServerDropMs the last connection dropped.
	ServerMs      float64     `json:"server_ms"`
	WorstServerMs float64     `json:"worst_run_server_ms"`
	ServerDropMs  float64     `json:"server_drop_ms"`
	WatchMs       float64     `json:"watch_ms"`   // Watch reported the change
	RecheckMs     float64     `json:"recheck_ms"` // Recheck ran for
	Open          int         `json:"open"`       // sockets never seen closed, all runs
	AfterDecision int64       `json:"after_decision"`
	InFlight      int64       `json:"in_flight_at_decision"`
	AfterSeen     int64       `json:"after_seen"`
	Delivered     int64       `json:"delivered"`
	Runs          []RevokeRun `json:"runs"`
	// CDFs of the close times as the load side saw them, all runs merged:
	// reading and non-reading sessions, ms at each percentile 0..100.
	ReadingCDF []float64 `json:"reading_cdf_ms,omitempty"`
	SlowCDF    []float64 `json:"slow_cdf_ms,omitempty"`
}

// RevokeRun is one revocation.
type RevokeRun struct {
	LastMs           float64 `json:"last_close_ms"`
	LastAfterWatchMs float64 `json:"last_close_after_watch_ms"`
	ReadingP50Ms     float64 `json:"reading_p50_ms"`
	ReadingP99Ms     float64 `json:"reading_p99_ms"`
	ReadingLastMs    float64 `json:"reading_last_ms"`
	SlowP50Ms        float64 `json:"slow_p50_ms,omitempty"`
	SlowP99Ms        float64 `json:"slow_p99_ms,omitempty"`
	SlowLastMs       float64 `json:"slow_last_ms,omitempty"`
	ServerMs         float64 `json:"server_ms"`
	ServerDropMs     float64 `json:"server_drop_ms"`
	// SlowFrames counts the non-reading sockets to which the server wrote
	// its Close frame in full (into the kernel's buffer, behind the data
	// their client never read); the others it dropped.
	SlowFrames int     `json:"slow_close_frames"`
	WatchMs    float64 `json:"watch_ms"`
	RecheckMs  float64 `json:"recheck_ms"`
	Closed     int     `json:"recheck_closed"` // sockets Recheck closed
	Open       int     `json:"open"`
	// ReadingEnds is how the reading sessions' connections ended, as they
	// saw it; ServerEnds how each handler's Read ended.
	ReadingEnds map[string]int `json:"reading_ends,omitempty"`
	ServerEnds  map[string]int `json:"server_ends,omitempty"`
	// SlowWrittenMedian is the median of the octets the server had
	// written to each non-reading socket when the registry changed (the
	// start burst and every push since were queued for it).
	SlowWrittenMedian float64 `json:"slow_written_median,omitempty"`
	AfterDecision     int64   `json:"after_decision"`
	InFlight          int64   `json:"in_flight_at_decision"`
	AfterSeen         int64   `json:"after_seen"`
	Delivered         int64   `json:"delivered"`
	Sessions          int     `json:"sessions"`
}

// RoomResult is the broadcast room with sessions that never read (room.go).
type RoomResult struct {
	Readers   int    `json:"readers"`
	Slow      int    `json:"slow"`
	Every     string `json:"every"`
	Size      int    `json:"size"`
	Duration  string `json:"duration"`
	Rcvbuf    int    `json:"rcvbuf"`
	SndBuf    int    `json:"sndbuf"`
	MaxQueued int    `json:"max_queued"`
	// Cases are the baseline (no non-reading session), then the measured
	// cases, each with the server's send buffer of its own.
	Cases []*RoomCase `json:"cases"`
}

// RoomCase is one configuration of the room, over every run.
type RoomCase struct {
	Name     string  `json:"name"`
	Slow     int     `json:"slow"`
	SndBuf   int     `json:"sndbuf"` // SO_SNDBUF of the server's sockets; 0: the kernel's autotuning
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	WorstP99 float64 `json:"worst_run_p99_ms"`
	Sent     int64   `json:"broadcasts"` // all runs
	Expected int64   `json:"expected"`   // deliveries to reading sessions, all runs
	Lost     int64   `json:"lost"`       // of those, never received
	// ReaderEnds counts reading sessions that ended during a run, by how.
	ReaderEnds map[string]int `json:"reader_ends,omitempty"`
	Runs       []RoomRun      `json:"runs"`
	CDF        []float64      `json:"cdf_ms,omitempty"`
}

// RoomRun is one run of the room.
type RoomRun struct {
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	Sent  int64   `json:"broadcasts"`
	Lost  int64   `json:"lost"`
	// SlowEnds is what happened to each non-reading session.
	SlowEnds []SlowEnd `json:"slow_ends,omitempty"`
	// SendErrors counts the room's Sends that failed (to closed sockets).
	SendErrors int64 `json:"send_errors"`
}

// SlowEnd is how one non-reading room session ended. Times are seconds
// after the first broadcast; zero when it did not happen in the run.
type SlowEnd struct {
	Code     int     `json:"code"` // as the server's handler saw it; 0 if still open
	Err      string  `json:"err,omitempty"`
	DecidedS float64 `json:"decided_s"` // the first broadcast Send to it that failed
	HandlerS float64 `json:"handler_s"` // its handler's Read returned (the server had dropped the connection)
}

// Target is one of the targets, evaluated on this run.
type Target struct {
	Name   string `json:"name"`
	Figure string `json:"figure"`
	Limit  string `json:"limit"`
	Pass   bool   `json:"pass"`
	Note   string `json:"note,omitempty"`
}

// Profile is a pprof profile captured from a server child for a missed
// target.
type Profile struct {
	Target string `json:"target"`
	File   string `json:"file"`
	Top    string `json:"top,omitempty"` // go tool pprof -top, abridged
	// Shares are the fractions of the profile's samples whose stacks
	// include each category's functions (categories overlap).
	Shares []Share `json:"shares,omitempty"`
}

// Share is one category of a CPU profile.
type Share struct {
	Category string  `json:"category"`
	Percent  float64 `json:"percent"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianIndex returns the index of the median element of v (the lower
// middle one for even lengths).
func medianIndex(v []float64) int {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
	return idx[(len(v)-1)/2]
}

func pick[T any](runs []T, f func(T) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

// infoOf describes the run that produced r (r itself, not merged).
func infoOf(r *Results) RunInfo {
	return RunInfo{Sections: r.Sections, Command: r.Command, Mode: r.Mode, Runs: r.Runs, Started: r.Started,
		Elapsed: r.Elapsed, Machine: r.Machine}
}

// runs returns the runs r holds, the latest last: its provenance, or r's
// own run.
func (r *Results) runs() []RunInfo {
	if len(r.Provenance) > 0 {
		return r.Provenance
	}
	return []RunInfo{infoOf(r)}
}

// runOf returns the index in r.runs() of the run that measured section,
// or -1.
func (r *Results) runOf(section string) int {
	for i, p := range r.runs() {
		for _, s := range p.Sections {
			if s == section {
				return i
			}
		}
	}
	return -1
}

// sameRun reports whether every given section was measured, and by one
// run: a ratio between two sections' figures is printed only then.
func (r *Results) sameRun(sections ...string) bool {
	first := -2
	for _, s := range sections {
		i := r.runOf(s)
		if i < 0 || (first != -2 && i != first) {
			return false
		}
		first = i
	}
	return true
}

// profileSection is the section whose target a profile was taken for.
func profileSection(p Profile) string {
	switch {
	case strings.HasPrefix(p.Target, tHandshakeCPU), strings.HasPrefix(p.Target, tOverhead), strings.HasPrefix(p.Target, tClientCPU):
		return "handshake"
	case strings.HasPrefix(p.Target, tFrames):
		return "frames"
	case strings.HasPrefix(p.Target, tMemory):
		return "memory"
	}
	return ""
}

// mergeResults returns the results of cur merged into old: every section
// cur measured replaces old's (handshake and centrifuge together: their
// cells share the floors), the others are old's, and Provenance records
// which run measured which. The targets are left for the caller to
// evaluate again.
func mergeResults(old, cur *Results) *Results {
	ran := map[string]bool{}
	for _, s := range cur.Sections {
		ran[s] = true
	}
	if ran["handshake"] {
		ran["centrifuge"] = true
	}
	m := *cur
	m.Provenance = nil
	for _, p := range old.runs() {
		var keep []string
		for _, s := range p.Sections {
			if !ran[s] {
				keep = append(keep, s)
			}
		}
		if len(keep) > 0 {
			p.Sections = keep
			m.Provenance = append(m.Provenance, p)
		}
	}
	m.Provenance = append(m.Provenance, infoOf(cur))
	m.Sections = nil
	for _, s := range allSections {
		if m.runOf(s) >= 0 {
			m.Sections = append(m.Sections, s)
		}
	}
	if !ran["handshake"] {
		m.Floors, m.Handshakes = old.Floors, old.Handshakes
	}
	if !ran["frames"] {
		m.Frames = old.Frames
	}
	if !ran["refresh"] {
		m.Refresh = old.Refresh
	}
	if !ran["memory"] {
		m.Memory = old.Memory
	}
	if !ran["scale"] {
		m.Scale = old.Scale
	}
	if !ran["device"] {
		m.Device, m.DeviceAllocs = old.Device, old.DeviceAllocs
	}
	if !ran["dos"] {
		m.DoS = old.DoS
	}
	if !ran["revoke"] {
		m.Revoke = old.Revoke
	}
	if !ran["room"] {
		m.Room = old.Room
	}
	m.Profiles = nil
	for _, p := range old.Profiles {
		if s := profileSection(p); s == "" || !ran[s] {
			m.Profiles = append(m.Profiles, p)
		}
	}
	m.Profiles = append(m.Profiles, cur.Profiles...)
	m.Errors = nil
	for _, e := range old.Errors {
		if !strings.HasPrefix(e, "(an earlier run) ") {
			e = "(an earlier run) " + e
		}
		m.Errors = append(m.Errors, e)
	}
	m.Errors = append(m.Errors, cur.Errors...)
	m.Targets = nil
	return &m
}

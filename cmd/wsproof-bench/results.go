package main

import (
	"sort"
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
	DoS        *DoSResult     `json:"dos,omitempty"`
	Targets    []Target       `json:"targets,omitempty"`
	Profiles   []Profile      `json:"profiles,omitempty"`
	Errors     []string       `json:"errors,omitempty"`
	Elapsed    string         `json:"elapsed"`
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
	System   string         `json:"system"` // "plain", "wsproof", "centrifuge"
	Alg      string         `json:"alg"`    // client algorithm; "" for plain; "anon", "HS256", "ES256" for centrifuge
	TLS      bool           `json:"tls"`
	Conc     int            `json:"concurrency"`
	Rate     float64        `json:"rate_per_s"`
	P50ms    float64        `json:"p50_ms"`
	P99ms    float64        `json:"p99_ms"`
	CPUus    float64        `json:"server_cpu_us"` // server CPU per operation
	ClientUs float64        `json:"client_cpu_us"` // load generator CPU per operation
	Ops      int            `json:"ops"`
	Failures map[string]int `json:"failures,omitempty"`
	Runs     []HSRun        `json:"runs"`
	CDF      []float64      `json:"cdf_ms,omitempty"` // latency at each percentile 0..100, all runs merged

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
	Target    string    `json:"target"`  // GOOS/GOARCH
	SizeBytes int64     `json:"size_bytes"`
	RSSKiB    float64   `json:"rss_kib,omitempty"` // linux/amd64 only: measured here
	Runs      []float64 `json:"rss_runs,omitempty"`
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

// Package wycheproof fetches the Wycheproof test vectors
// (github.com/C2SP/wycheproof) at test time and keeps the account of how
// wsproof's code answered them, for the Wycheproof tests of packages keys and
// protocol.
//
// # Fetching
//
// The vectors are not vendored and the module is not a requirement in go.mod:
// like Go's own crypto tests (crypto/internal/cryptotest.FetchModule, and
// golang.org/x/crypto/internal/wycheproof), [Dir] runs
//
//	go mod download -json github.com/C2SP/wycheproof@<Version>
//
// and reads the files under testvectors_v1 in the module cache. The download
// goes through GOPROXY and is checked against the checksum database (GOSUMDB)
// like any module; once cached it needs no network. When the module cannot be
// fetched the test fails, never skips, with a message saying how to provide
// it:
//
//   - online, any working GOPROXY (the default proxy.golang.org, or a mirror);
//   - offline, a module cache that already holds the module (run the go mod
//     download command above once while online, or copy a module cache and
//     set GOMODCACHE to it); GOPROXY=off then suffices;
//   - a GOPROXY=file:///path/to/proxy directory holding the module (with
//     GONOSUMDB=github.com/C2SP/wycheproof when the checksum database is out
//     of reach);
//   - WYCHEPROOF_DIR set to a checkout of github.com/C2SP/wycheproof at the
//     pinned commit (or to its testvectors_v1 directory). This copy is not
//     checked against the checksum database: the caller vouches for it.
//
// # Accounting
//
// Every case ends in exactly one column of the summary: a valid case
// accepted, an invalid case refused, an acceptable case decided as the test's
// decision table says, a case outside wsproof's profile (refused, as it must
// be), or a disagreement. A disagreement fails the test.
package wycheproof

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// The pinned module: github.com/C2SP/wycheproof at commit b51abcfb8daf
// (2025-09-01). Its go.sum line is
//
//	github.com/C2SP/wycheproof v0.0.0-20250901140545-b51abcfb8daf h1:5BKKVVVj676FUWirLcouEEL6GCYR9X0opkMlEUck8FY=
const (
	Module  = "github.com/C2SP/wycheproof"
	Version = "v0.0.0-20250901140545-b51abcfb8daf"
)

// EnvDir names the environment variable that points at a local copy of the
// module, used instead of the module cache.
const EnvDir = "WYCHEPROOF_DIR"

var fetch struct {
	once sync.Once
	dir  string
	err  error
	told atomic.Bool // the instructions have been printed
}

// Dir returns the directory holding the version 1 test vectors
// (testvectors_v1), fetching the module on first use. It fails t, with
// instructions, when the module cannot be had; it never skips.
func Dir(t testing.TB) string {
	t.Helper()
	fetch.once.Do(func() { fetch.dir, fetch.err = locate() })
	if fetch.err != nil {
		if fetch.told.CompareAndSwap(false, true) {
			t.Fatalf("wycheproof: %v\n\n%s", fetch.err, howToProvide)
		}
		t.Fatalf("wycheproof: %v (how to provide the module is printed with another failure)", fetch.err)
	}
	return fetch.dir
}

const howToProvide = `The Wycheproof test vectors are fetched at test time as the Go module
` + Module + `@` + Version + `
through the Go module proxy. To run these tests, provide the module by one of:
  - network access to a Go module proxy (GOPROXY, default https://proxy.golang.org);
  - a module cache that already holds it (GOPROXY=off then suffices):
    run "go mod download ` + Module + `@` + Version + `" once while online,
    or copy a module cache and point GOMODCACHE at it;
  - GOPROXY=file:///path/to/dir, a module proxy directory that holds it
    (with GONOSUMDB=github.com/C2SP/wycheproof if sum.golang.org is out of reach);
  - ` + EnvDir + `=/path/to/wycheproof, a checkout of https://github.com/C2SP/wycheproof
    at commit b51abcfb8daf (or its testvectors_v1 directory).`

func locate() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		for _, c := range []string{filepath.Join(d, "testvectors_v1"), d} {
			if _, err := os.Stat(filepath.Join(c, "ed25519_test.json")); err == nil {
				return c, nil
			}
		}
		return "", fmt.Errorf("%s=%s holds neither testvectors_v1/ed25519_test.json nor ed25519_test.json", EnvDir, d)
	}
	// go test puts $GOROOT/bin first in the test binary's PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command to fetch %s@%s: %v", Module, Version, err)
	}
	// Run outside this module, so that nothing reads or writes its go.mod
	// and go.sum, and outside any workspace.
	tmp, err := os.MkdirTemp("", "wycheproof-fetch")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(gobin, "mod", "download", "-json", Module+"@"+Version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GO111MODULE=on")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// With -json, go mod download reports a failure in the JSON's Error
	// field and exits non-zero.
	var m struct {
		Dir   string
		Error string
	}
	jerr := json.Unmarshal(out, &m)
	if err != nil || jerr != nil || m.Error != "" || m.Dir == "" {
		detail := strings.TrimSpace(m.Error)
		if detail == "" {
			detail = strings.TrimSpace(stderr.String() + "\n" + string(out))
		}
		if err == nil {
			err = jerr
		}
		return "", fmt.Errorf("go mod download %s@%s failed (%v): %s", Module, Version, err, detail)
	}
	d := filepath.Join(m.Dir, "testvectors_v1")
	if _, err := os.Stat(d); err != nil {
		return "", fmt.Errorf("module %s@%s has no testvectors_v1: %v", Module, Version, err)
	}
	return d, nil
}

// Load decodes testvectors_v1/name into v, which is usually a *File[G].
func Load(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Dir(t), name))
	if err != nil {
		t.Fatalf("wycheproof: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("wycheproof: %s: %v", name, err)
	}
}

// Glob returns the names of the files in testvectors_v1 that match pattern,
// sorted. It fails t when none does, so that a renamed file is noticed.
func Glob(t testing.TB, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(Dir(t), pattern))
	if err != nil || len(paths) == 0 {
		t.Fatalf("wycheproof: no file matches %s (%v)", pattern, err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	sort.Strings(names)
	return names
}

// File is a test vector file of the version 1 schemas, with its groups of
// type G.
type File[G any] struct {
	Algorithm     string          `json:"algorithm"`
	Schema        string          `json:"schema"`
	NumberOfTests int             `json:"numberOfTests"`
	Header        []string        `json:"header"`
	Notes         map[string]Note `json:"notes"`
	TestGroups    []G             `json:"testGroups"`
}

// Note describes a flag.
type Note struct {
	BugType     string `json:"bugType"`
	Description string `json:"description"`
}

// Result is a case's expected result.
type Result string

// The three results of the Wycheproof schemas.
const (
	Valid      Result = "valid"
	Invalid    Result = "invalid"
	Acceptable Result = "acceptable"
)

// Case holds the members every test case has.
type Case struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	Flags   []string `json:"flags"`
	Result  Result   `json:"result"`
}

// Hex is a byte string written in hexadecimal.
type Hex []byte

// UnmarshalJSON implements json.Unmarshaler.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

// Verdict is what wsproof must do with a case, decided before the case runs.
type Verdict struct {
	Accept bool
	// OutOfProfile is set, with Reason, for a case outside wsproof's
	// profile: an algorithm, hash, parameter set, key or encoding that
	// wsproof does not use. Such a case must be refused whatever its result.
	OutOfProfile bool
	// Reason explains an out-of-profile case or an acceptable case's
	// decision.
	Reason string
}

// OutOfProfile returns the verdict for a case outside wsproof's profile.
func OutOfProfile(reason string) Verdict {
	return Verdict{OutOfProfile: true, Reason: reason}
}

// Decision is the decision for an acceptable case carrying a flag.
type Decision struct {
	Accept bool
	Reason string
}

// InProfile returns the verdict for a case inside wsproof's profile: valid
// cases are accepted, invalid ones refused, and acceptable ones decided by
// the decisions for their flags (refused if any flag's decision refuses).
// An acceptable case with a flag missing from decisions gets ok false: the
// test must then fail, so that every acceptable case is decided explicitly.
func InProfile(c Case, decisions map[string]Decision) (v Verdict, ok bool) {
	switch c.Result {
	case Valid:
		return Verdict{Accept: true}, true
	case Invalid:
		return Verdict{}, true
	case Acceptable:
		v = Verdict{Accept: true}
		var reasons []string
		for _, f := range c.Flags {
			d, found := decisions[f]
			if !found {
				return Verdict{Reason: "no decision for acceptable flag " + f}, false
			}
			v.Accept = v.Accept && d.Accept
			reasons = append(reasons, f+": "+d.Reason)
		}
		if len(c.Flags) == 0 {
			return Verdict{Reason: "acceptable case without flags"}, false
		}
		v.Reason = strings.Join(reasons, "; ")
		return v, true
	}
	return Verdict{Reason: "unknown result " + string(c.Result)}, false
}

// Disagreement is a case, or a group's key import, on which wsproof did
// something other than its verdict.
type Disagreement struct {
	File    string
	TcIDs   string // one tcId, or the tcIds of the group whose key import disagreed
	Comment string
	Flags   []string
	Result  Result
	What    string // the operation: "verify", "import: PEM", ...
	Want    string // "accept" or "refuse", with the reason when there is one
	Got     string // what wsproof did, with its error
}

func (d Disagreement) String() string {
	res := string(d.Result)
	if len(d.Flags) > 0 {
		res += " " + strings.Join(d.Flags, ",")
	}
	if res != "" {
		res = " (" + res + ")"
	}
	return fmt.Sprintf("%s tcId %s%s %q: %s: want %s; got %s",
		d.File, d.TcIDs, res, d.Comment, d.What, d.Want, d.Got)
}

// Tally is the account of one file.
type Tally struct {
	File              string
	Cases             int
	ValidAccepted     int
	InvalidRefused    int
	AcceptableDecided int
	OutOfProfile      int
	Disagreements     []Disagreement
	// OutReasons counts the out-of-profile cases by reason, and Decided the
	// acceptable cases by decision.
	OutReasons map[string]int
	Decided    map[string]int
	// Problems are faults of the test itself (an undecided acceptable flag,
	// a failed self-check); they fail the test like disagreements.
	Problems []string
}

// NewTally starts the account of file.
func NewTally(file string) *Tally {
	return &Tally{File: file, OutReasons: map[string]int{}, Decided: map[string]int{}}
}

// Record counts case c, whose verdict is v, on which wsproof accepted or
// refused; got describes what wsproof did (an error text, or "accepted").
func (t *Tally) Record(c Case, what string, v Verdict, accepted bool, got string) {
	t.Cases++
	if accepted != v.Accept {
		want := "refuse"
		if v.Accept {
			want = "accept"
		}
		if v.Reason != "" {
			want += " (" + v.Reason + ")"
		}
		t.Disagreements = append(t.Disagreements, Disagreement{
			File: t.File, TcIDs: strconv.Itoa(c.TcID), Comment: c.Comment, Flags: c.Flags,
			Result: c.Result, What: what, Want: want, Got: got,
		})
		return
	}
	switch {
	case v.OutOfProfile:
		t.OutOfProfile++
		t.OutReasons[v.Reason]++
	case c.Result == Valid:
		t.ValidAccepted++
	case c.Result == Invalid:
		t.InvalidRefused++
	default:
		t.AcceptableDecided++
		d := "refused"
		if v.Accept {
			d = "accepted"
		}
		t.Decided[d+": "+v.Reason]++
	}
}

// Disagree records a disagreement that is not one case's outcome: a group's
// key import. The group holds cases; label names the key.
func (t *Tally) Disagree(cases []Case, label, what, want, got string) {
	t.Disagreements = append(t.Disagreements, Disagreement{
		File: t.File, TcIDs: Span(cases), Comment: label, What: what, Want: want, Got: got,
	})
}

// Problem records a fault of the test itself.
func (t *Tally) Problem(format string, args ...any) {
	t.Problems = append(t.Problems, t.File+": "+fmt.Sprintf(format, args...))
}

// Span returns the tcIds of cases as "lo-hi", or "-" for none.
func Span(cases []Case) string {
	if len(cases) == 0 {
		return "-"
	}
	lo, hi := cases[0].TcID, cases[0].TcID
	for _, c := range cases {
		lo, hi = min(lo, c.TcID), max(hi, c.TcID)
	}
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// Report prints the summary table of tallies, the out-of-profile reasons,
// the acceptable decisions, and every disagreement and problem, and fails t
// if there is any disagreement or problem.
func Report(t testing.TB, tallies []*Tally) {
	t.Helper()
	var b strings.Builder
	w := 10
	for _, tl := range tallies {
		w = max(w, len(tl.File))
	}
	row := func(cols ...any) {
		fmt.Fprintf(&b, "%-*s %6v %8v %8v %11v %8v %13v\n", append([]any{w}, cols...)...)
	}
	b.WriteString("\n")
	row("file", "cases", "valid", "invalid", "acceptable", "out of", "disagreements")
	row("", "", "accepted", "refused", "decided", "profile", "")
	var sum Tally
	var dis []Disagreement
	var problems []string
	for _, tl := range tallies {
		row(tl.File, tl.Cases, tl.ValidAccepted, tl.InvalidRefused, tl.AcceptableDecided, tl.OutOfProfile, len(tl.Disagreements))
		sum.Cases += tl.Cases
		sum.ValidAccepted += tl.ValidAccepted
		sum.InvalidRefused += tl.InvalidRefused
		sum.AcceptableDecided += tl.AcceptableDecided
		sum.OutOfProfile += tl.OutOfProfile
		dis = append(dis, tl.Disagreements...)
		problems = append(problems, tl.Problems...)
	}
	row("total", sum.Cases, sum.ValidAccepted, sum.InvalidRefused, sum.AcceptableDecided, sum.OutOfProfile, len(dis))

	b.WriteString("\nOut of profile, by reason (refused, unless the reason says otherwise):\n")
	for _, tl := range tallies {
		for _, r := range sortedKeys(tl.OutReasons) {
			fmt.Fprintf(&b, "  %s: %d: %s\n", tl.File, tl.OutReasons[r], r)
		}
	}
	b.WriteString("\nAcceptable cases, as decided:\n")
	for _, tl := range tallies {
		for _, r := range sortedKeys(tl.Decided) {
			fmt.Fprintf(&b, "  %s: %d %s\n", tl.File, tl.Decided[r], r)
		}
	}
	t.Log(b.String())

	if len(dis) > 0 {
		var d strings.Builder
		fmt.Fprintf(&d, "%d disagreements with Wycheproof (each must be fixed, not listed away):\n", len(dis))
		for _, x := range dis {
			d.WriteString("  " + x.String() + "\n")
		}
		t.Error(d.String())
	}
	if len(problems) > 0 {
		t.Error("faults of the test itself:\n  " + strings.Join(problems, "\n  "))
	}
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

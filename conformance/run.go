package conformance

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wsproof/wsproof/protocol"
)

// Case results.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// Result is the outcome of one case.
type Result struct {
	ID       string   `json:"id"`
	Group    string   `json:"group"`
	Title    string   `json:"title"`
	Section  string   `json:"section"`
	Rows     []string `json:"rows,omitempty"`    // the rows of spec section "State machines" the case drives
	Scripts  []string `json:"scripts,omitempty"` // the session vectors the case runs against the peer
	Expected string   `json:"expected"`
	Got      string   `json:"got"`
	Result   string   `json:"result"` // Pass, Fail or Skip
	// Note is what else was seen; for a skipped case, why it was skipped.
	Note string `json:"note,omitempty"`
	// CodeNotChecked, on a passing negative case, says why the exact spec
	// code could not be checked: the peer is not in diagnostic mode and
	// several codes share the close code it sent (see the package doc).
	CodeNotChecked string `json:"code_not_checked,omitempty"`
	Millis         int64  `json:"duration_ms"`
}

// Report is the outcome of a run of one suite.
type Report struct {
	Tool     string    `json:"tool,omitempty"`
	Version  string    `json:"version,omitempty"`
	Spec     string    `json:"spec"`
	Role     string    `json:"role"` // the role under test: "server" or "client"
	Target   string    `json:"target"`
	Identity string    `json:"identity,omitempty"`
	Peer     string    `json:"peer,omitempty"` // the client under test, for the client suite
	Started  time.Time `json:"started"`
	Millis   int64     `json:"duration_ms"`
	// Diagnostic reports that the peer was run in diagnostic mode, so that
	// every negative case checked the exact spec code.
	Diagnostic bool     `json:"diagnostic"`
	Passed     int      `json:"passed"`
	Failed     int      `json:"failed"`
	Skipped    int      `json:"skipped"`
	Cases      []Result `json:"cases"`
	// NotDriven lists the rows of the role's state machine that no case
	// drives, with the reason: what a remote peer cannot make happen.
	NotDriven []RowGap `json:"rows_not_driven"`
}

// RowGap is a set of state machine rows that the suite does not drive, and
// why.
type RowGap struct {
	Rows   []string `json:"rows"`
	Reason string   `json:"reason"`
}

// Tally recounts Passed, Failed and Skipped from Cases.
func (r *Report) Tally() {
	r.Passed, r.Failed, r.Skipped = 0, 0, 0
	for _, c := range r.Cases {
		switch c.Result {
		case Pass:
			r.Passed++
		case Fail:
			r.Failed++
		default:
			r.Skipped++
		}
	}
}

// Options shape a run.
type Options struct {
	// Select keeps the cases whose id it returns true for; nil keeps all.
	Select func(id string) bool
	// Parallel is how many server cases run at once; 0 means 4.
	Parallel int
	// Rate bounds the new connections per second of the server suite, to
	// stay under a server's handshake rate limits; 0 means no bound.
	Rate float64
	// Progress, when set, is called with each result as its case ends,
	// from any goroutine, one call at a time.
	Progress func(Result)
}

func (o *Options) selected(id string) bool { return o == nil || o.Select == nil || o.Select(id) }

// probeCase is one case: what it tests, where the spec says so, and what the
// spec requires, and the function that runs it on its own connections.
type probeCase struct {
	id      string
	group   string
	section string
	title   string
	expect  string
	code    protocol.Code // the error the peer must detect, when one does
	rows    []string      // the rows of spec section "State machines" it drives
	slow    bool          // waits for a deadline: scheduled first so that waits overlap
	run     func(ctx context.Context, r *caseRun)
}

func (pc probeCase) info() Case {
	return Case{ID: pc.id, Group: pc.group, Section: pc.section, Title: pc.title, Expected: pc.expect, Code: pc.code, Rows: pc.rows,
		Scripts: scriptsOf(pc.id)}
}

// caseRun is a case being run: its verdict and what was seen.
type caseRun struct {
	res     Result
	diag    bool // the peer is in diagnostic mode
	verdict bool
	notes   []string
	paced   time.Duration // spent waiting for a turn to connect, not in the case
}

func (r *caseRun) pass(got string) { r.set(Pass, got) }
func (r *caseRun) fail(got string) { r.set(Fail, got) }

// skip ends the case without a verdict on the peer, saying why.
func (r *caseRun) skip(why string) {
	r.set(Skip, "skipped: "+why)
	r.note("%s", why)
}

func (r *caseRun) set(result, got string) {
	if r.verdict {
		return
	}
	r.verdict = true
	r.res.Result, r.res.Got = result, got
	if result != Pass {
		r.res.CodeNotChecked = ""
	}
}

// judge passes the case when ok, and fails it otherwise, recording got.
func (r *caseRun) judge(ok bool, got string) {
	if ok {
		r.pass(got)
	} else {
		r.fail(got)
	}
}

func (r *caseRun) note(format string, args ...any) {
	r.notes = append(r.notes, oneLine(fmt.Sprintf(format, args...)))
}

// closeIs reports whether ev is the Close frame the spec requires for a
// failure with code, by the rule of the package doc: in diagnostic mode
// the reason must name code exactly; otherwise the close code and the
// table's reason text must be code's, and when other codes share that close
// code the result says that the exact code was not checked.
func (r *caseRun) closeIs(ev event, code protocol.Code) bool {
	if ev.kind != evClose || ev.code != code.CloseCode() {
		return false
	}
	if r.diag {
		got, exact := protocol.CodeOfClose(ev.code, ev.reason)
		return exact && got == code
	}
	if ev.reason != code.Reason() {
		return false
	}
	if n := sharing(code); n > 1 {
		r.res.CodeNotChecked = fmt.Sprintf("not in diagnostic mode, and %d codes share close code %d", n, code.CloseCode())
	}
	return true
}

// runCases runs cases, at most parallel at a time, and reports each result
// to prog as it completes. Results keep the order of cases.
func runCases(ctx context.Context, cases []probeCase, parallel int, diag bool, prog func(Result)) []Result {
	if parallel < 1 {
		parallel = 4
	}
	order := make([]int, len(cases))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return cases[order[a]].slow && !cases[order[b]].slow })
	results := make([]Result, len(cases))
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = runCase(ctx, cases[i], diag)
				if prog != nil {
					mu.Lock()
					prog(results[i])
					mu.Unlock()
				}
			}
		}()
	}
	for _, i := range order {
		work <- i
	}
	close(work)
	wg.Wait()
	return results
}

func runCase(ctx context.Context, pc probeCase, diag bool) Result {
	r := &caseRun{res: pc.result(), diag: diag}
	start := time.Now()
	if ctx.Err() != nil {
		r.skip("interrupted")
	} else {
		func() {
			defer func() {
				if v := recover(); v != nil {
					r.fail(fmt.Sprintf("the suite failed: %v", v))
				}
			}()
			pc.run(ctx, r)
		}()
	}
	return r.finish(time.Since(start) - r.paced)
}

func (pc probeCase) result() Result {
	return Result{ID: pc.id, Group: pc.group, Title: pc.title, Section: pc.section, Rows: pc.rows, Scripts: scriptsOf(pc.id),
		Expected: pc.expect}
}

// finish completes the result of a case that took d.
func (r *caseRun) finish(d time.Duration) Result {
	if !r.verdict {
		r.fail("the case reached no verdict")
	}
	r.res.Millis = d.Milliseconds()
	r.res.Note = strings.Join(r.notes, "; ")
	return r.res
}

// Expected outcomes as the reports state them.

// expClose is a close with the code of the spec's table.
func expClose(code protocol.Code) string {
	return fmt.Sprintf("close %d %q (%s)", code.CloseCode(), code.Reason(), code)
}

// sharing is the number of codes whose close code is code's.
func sharing(code protocol.Code) int {
	n := 0
	for _, c := range protocol.Codes() {
		if c.CloseCode() != 0 && c.CloseCode() == code.CloseCode() {
			n++
		}
	}
	return n
}

func expHTTP(code protocol.Code) string {
	return fmt.Sprintf("HTTP %d (%s)", code.HTTPStatus(), code)
}

const expAccept = "accept"

// oneLine is s with control characters as spaces and runs of white space
// as one: peer text fit for one line of a report.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)), " ")
}

// cell shortens s to at most n characters, marking the cut with "…".
func cell(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wsproof/wsproof/protocol"
)

const probeUsage = `Usage: wsproof probe server URL --key FILE --server-keys FILE --identity ID [flags]
       wsproof probe client [flags]

Runs the rules of spec/wsproof-v1.md against a live peer, the way the Autobahn
Testsuite does for WebSocket itself, and reports each case with the spec section
it tests, the outcome the spec requires and the outcome seen.

    probe server   tests a wsproof server from the outside: every negative rule of
                   the response procedure over the wire, plus transport abuse
    probe client   runs a deliberately misbehaving server and checks that a client
                   refuses each bad challenge

Run "wsproof probe server -h" or "wsproof probe client -h" for the flags.

Both print a live progress line and a summary table, and write a JSON report
(--json FILE) and a self-contained HTML report (--html FILE). The exit status is 1
when a case fails.
`

func (c *cli) probe(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, probeUsage)
		return errUsage
	}
	switch args[0] {
	case "server":
		return c.probeServer(ctx, args[1:])
	case "client":
		return c.probeClient(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stderr, probeUsage)
		return flag.ErrHelp
	}
	return c.unknownSub("probe", args[0], probeUsage)
}

// Case results.
const (
	resultPass = "pass"
	resultFail = "fail"
	resultSkip = "skip"
)

// caseResult is one case in a report.
type caseResult struct {
	ID       string   `json:"id"`
	Group    string   `json:"group"`
	Title    string   `json:"title"`
	Section  string   `json:"section"`
	Rows     []string `json:"rows,omitempty"` // the rows of spec section "State machines" the case drives
	Expected string   `json:"expected"`
	Got      string   `json:"got"`
	Result   string   `json:"result"`
	Note     string   `json:"note,omitempty"`
	Millis   int64    `json:"duration_ms"`
}

// probeReport is the JSON report of a probe run.
type probeReport struct {
	Tool     string       `json:"tool"`
	Version  string       `json:"version"`
	Spec     string       `json:"spec"`
	Role     string       `json:"role"` // the role under test: "server" or "client"
	Target   string       `json:"target"`
	Identity string       `json:"identity,omitempty"`
	Peer     string       `json:"peer,omitempty"` // the client under test, for probe client
	Started  time.Time    `json:"started"`
	Millis   int64        `json:"duration_ms"`
	Passed   int          `json:"passed"`
	Failed   int          `json:"failed"`
	Skipped  int          `json:"skipped"`
	Cases    []caseResult `json:"cases"`
	// NotDriven lists the rows of the role's state machine that no case
	// drives, with the reason: what a remote peer cannot make happen.
	NotDriven []rowGap `json:"rows_not_driven"`
}

// rowGap is a set of state machine rows that the probe does not drive, and
// why.
type rowGap struct {
	Rows   []string `json:"rows"`
	Reason string   `json:"reason"`
}

func (r *probeReport) tally() {
	r.Passed, r.Failed, r.Skipped = 0, 0, 0
	for _, c := range r.Cases {
		switch c.Result {
		case resultPass:
			r.Passed++
		case resultFail:
			r.Failed++
		default:
			r.Skipped++
		}
	}
}

func moduleVersion() string {
	v := "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return v
}

// probeCase is one case: what it tests, where the spec says so, and what the
// spec requires, and the function that runs it on its own connections.
type probeCase struct {
	id      string
	group   string
	section string
	title   string
	expect  string
	rows    []string // the rows of spec section "State machines" it drives
	slow    bool     // waits for a deadline: scheduled first so that waits overlap
	run     func(ctx context.Context, r *caseRun)
}

// caseRun is a case being run: its verdict and what was seen.
type caseRun struct {
	res     caseResult
	verdict bool
	notes   []string
	paced   time.Duration // spent waiting for a turn to connect, not in the case
}

func (r *caseRun) pass(got string) { r.set(resultPass, got) }
func (r *caseRun) fail(got string) { r.set(resultFail, got) }

func (r *caseRun) skip(why string) {
	r.set(resultSkip, "not run")
	r.note("%s", why)
}

func (r *caseRun) set(result, got string) {
	if r.verdict {
		return
	}
	r.verdict = true
	r.res.Result, r.res.Got = result, got
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

// runCases runs cases, at most parallel at a time, and reports each result
// to prog as it completes. Results keep the order of cases.
func runCases(ctx context.Context, cases []probeCase, parallel int, prog *progress) []caseResult {
	if parallel < 1 {
		parallel = 1
	}
	order := make([]int, len(cases))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return cases[order[a]].slow && !cases[order[b]].slow })
	results := make([]caseResult, len(cases))
	work := make(chan int)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = runCase(ctx, cases[i])
				prog.finish(results[i])
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

func runCase(ctx context.Context, pc probeCase) caseResult {
	r := &caseRun{res: caseResult{ID: pc.id, Group: pc.group, Title: pc.title, Section: pc.section, Rows: pc.rows, Expected: pc.expect}}
	start := time.Now()
	if ctx.Err() != nil {
		r.skip("interrupted")
	} else {
		func() {
			defer func() {
				if v := recover(); v != nil {
					r.fail(fmt.Sprintf("the probe failed: %v", v))
				}
			}()
			pc.run(ctx, r)
		}()
	}
	if !r.verdict {
		r.fail("the case reached no verdict")
	}
	r.res.Millis = (time.Since(start) - r.paced).Milliseconds()
	r.res.Note = strings.Join(r.notes, "; ")
	return r.res
}

// progress is the live progress line: rewritten in place on a terminal,
// one line per finished case otherwise. Failures always get a line of
// their own, so that they stay visible.
type progress struct {
	w     io.Writer
	tty   bool
	total int

	mu                   sync.Mutex
	done, failed, passed int
	last                 string
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, tty: isTTY(w), total: total}
}

// isTTY reports whether w is a terminal.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) finish(r caseResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	switch r.Result {
	case resultFail:
		p.failed++
	case resultPass:
		p.passed++
	}
	width := len(fmt.Sprint(p.total))
	count := fmt.Sprintf("[%*d/%d]", width, p.done, p.total)
	if !p.tty {
		fmt.Fprintf(p.w, "%s %s %s (%s)\n", count, strings.ToUpper(r.Result), r.ID, ms(r.Millis))
		if r.Result == resultFail {
			fmt.Fprintf(p.w, "    expected %s; got %s\n", r.Expected, r.Got)
		}
		return
	}
	if r.Result == resultFail {
		fmt.Fprintf(p.w, "\r\x1b[KFAIL %s: expected %s; got %s\n", r.ID, r.Expected, r.Got)
	}
	// One line that fits a narrow terminal, so that \r can rewrite it.
	line := cell(fmt.Sprintf("%s %d passed, %d failed  %s %s", count, p.passed, p.failed, r.Result, r.ID), 79)
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	p.last = line
}

// end clears the progress line on a terminal.
func (p *progress) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

func ms(n int64) string {
	if n >= 10000 {
		return fmt.Sprintf("%.1f s", float64(n)/1000)
	}
	return fmt.Sprintf("%d ms", n)
}

// tableWidth is the width of the terminal summary: the table, the failures
// and the rows not driven fit in it.
const tableWidth = 100

// printTable prints the summary of a report in at most tableWidth columns:
// one line per case (result, id, rows, time and what was seen, or why it
// was skipped, shortened), then each failure in full, the reason for each
// skip, the rows that no case drives, and the count. The JSON and HTML reports carry every field in full.
func printTable(w io.Writer, rep *probeReport) {
	idW, rowsW := len("CASE"), len("ROWS")
	for _, c := range rep.Cases {
		idW = max(idW, len(c.ID))
		rowsW = max(rowsW, len(rowsText(c.Rows)))
	}
	rowsW = min(rowsW, 11)
	const resW, timeW = 4, 7
	gotW := max(tableWidth-(resW+idW+rowsW+timeW+3+2), 12)
	line := func(res, id, rows, t, got string) {
		s := fmt.Sprintf("%-*s %-*s %-*s %*s  %s", resW, res, idW, id, rowsW, cell(rows, rowsW), timeW, t, cell(got, gotW))
		fmt.Fprintln(w, strings.TrimRight(s, " "))
	}
	line("RES", "CASE", "ROWS", "TIME", "GOT")
	var failed, skipped []caseResult
	for _, c := range rep.Cases {
		got := c.Got
		switch c.Result {
		case resultFail:
			failed = append(failed, c)
		case resultSkip:
			skipped = append(skipped, c)
			if c.Note != "" {
				got = c.Note // why, which is all there is to see
			}
		}
		line(strings.ToUpper(c.Result), c.ID, rowsText(c.Rows), ms(c.Millis), got)
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nFailed:\n")
		for _, c := range failed {
			where := c.Section
			if len(c.Rows) > 0 {
				where = "rows " + rowsText(c.Rows) + "; " + where
			}
			wrapped(w, "  ", "    ", c.ID+" ("+where+")")
			wrapped(w, "    expected ", "             ", c.Expected)
			wrapped(w, "    got      ", "             ", c.Got)
			if c.Note != "" {
				wrapped(w, "    note     ", "             ", c.Note)
			}
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "\nSkipped:\n")
		for _, c := range skipped {
			wrapped(w, "  "+c.ID+": ", "      ", c.Note)
		}
	}
	if len(rep.NotDriven) > 0 {
		fmt.Fprintf(w, "\nRows not driven remotely:\n")
		for _, g := range rep.NotDriven {
			wrapped(w, "  "+strings.Join(g.Rows, " ")+": ", "      ", g.Reason)
		}
	}
	fmt.Fprintf(w, "\n%d cases: %d passed, %d failed, %d skipped, in %s\n",
		len(rep.Cases), rep.Passed, rep.Failed, rep.Skipped, time.Duration(rep.Millis)*time.Millisecond)
}

// rowsText is a case's rows for the table: "S9 S10 S12".
func rowsText(rows []string) string { return strings.Join(rows, " ") }

// wrapped prints text after first, word-wrapped to tableWidth, its further
// lines after rest. A word longer than a line is cut.
func wrapped(w io.Writer, first, rest, text string) {
	prefix := first
	line := ""
	flush := func() {
		fmt.Fprintln(w, strings.TrimRight(prefix+line, " "))
		prefix, line = rest, ""
	}
	for _, word := range strings.Fields(text) {
		room := tableWidth - len(prefix)
		if len(word) > room {
			word = cell(word, room)
		}
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= room:
			line += " " + word
		default:
			flush()
			line = word
		}
	}
	flush()
}

// cell shortens s for a table column.
func cell(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// finishProbe prints the table and writes the reports. It returns an error
// when a case failed, so that the exit status says so.
func (c *cli) finishProbe(rep *probeReport, jsonPath, htmlPath string) error {
	rep.tally()
	printTable(c.stdout, rep)
	if jsonPath != "" {
		if err := writeJSONReport(jsonPath, rep); err != nil {
			return &userError{fmt.Sprintf("cannot write the JSON report %s", jsonPath), "check --json", err}
		}
		fmt.Fprintf(c.stdout, "JSON report: %s\n", jsonPath)
	}
	if htmlPath != "" {
		if err := writeHTMLReport(htmlPath, rep); err != nil {
			return &userError{fmt.Sprintf("cannot write the HTML report %s", htmlPath), "check --html", err}
		}
		fmt.Fprintf(c.stdout, "HTML report: %s\n", htmlPath)
	}
	if rep.Failed > 0 {
		return &userError{fmt.Sprintf("%d of %d probe cases failed", rep.Failed, len(rep.Cases)), "see the table above", nil}
	}
	return nil
}

// Expected outcomes as the reports state them.

// expClose is a close with the code and fixed reason of the spec's table.
// A close code that several codes share (4003, every authentication
// failure) cannot name its code on the wire: the expectation says that only
// the close code and reason are checked.
func expClose(code protocol.Code) string {
	if n := sharing(code); n > 1 {
		return fmt.Sprintf("close %d %q (%s; close code and reason only: %d codes share %d)",
			code.CloseCode(), code.Reason(), code, n, code.CloseCode())
	}
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

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/wsproof/wsproof/conformance"
)

// writeJSONReport writes rep as indented JSON, replacing path atomically.
func writeJSONReport(path string, rep *conformance.Report) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	return writeAtomic(path, b.Bytes(), 0o644)
}

// writeHTMLReport writes rep as one self-contained HTML page: inline CSS, no
// script, no external resource, so that it can be attached to a bug report
// or archived by CI and read anywhere. Every string from the peer is
// escaped by html/template.
func writeHTMLReport(path string, rep *conformance.Report) error {
	type group struct {
		Name  string
		Cases []conformance.Result
		Fail  int
	}
	var groups []*group
	byName := map[string]*group{}
	var failures []conformance.Result
	for _, c := range rep.Cases {
		g := byName[c.Group]
		if g == nil {
			g = &group{Name: c.Group}
			byName[c.Group] = g
			groups = append(groups, g)
		}
		g.Cases = append(g.Cases, c)
		if c.Result == conformance.Fail {
			g.Fail++
			failures = append(failures, c)
		}
	}
	total := len(rep.Cases)
	pct := func(n int) float64 {
		if total == 0 {
			return 0
		}
		return float64(n) * 100 / float64(total)
	}
	data := map[string]any{
		"R":        rep,
		"Groups":   groups,
		"Failures": failures,
		"Total":    total,
		"PassPct":  pct(rep.Passed),
		"FailPct":  pct(rep.Failed),
		"SkipPct":  pct(rep.Skipped),
		"Started":  rep.Started.UTC().Format("2006-01-02 15:04:05 UTC"),
		"Duration": (time.Duration(rep.Millis) * time.Millisecond).Round(10 * time.Millisecond).String(),
	}
	var b bytes.Buffer
	if err := reportTemplate.Execute(&b, data); err != nil {
		return err
	}
	return writeAtomic(path, b.Bytes(), 0o644)
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"upper": strings.ToUpper,
	"join":  func(s []string) string { return strings.Join(s, " ") },
	"ms":    ms,
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f", f) },
}).Parse(reportHTML))

const reportHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsproof probe {{.R.Role}}: {{.R.Passed}}/{{.Total}} passed</title>
<style>
:root { --bg:#fff; --fg:#1b1f24; --muted:#5b6470; --line:#e3e6ea; --card:#f6f8fa;
  --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9; --skip:#6e7781; --skip-bg:#eaeef2; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#0d1117; --fg:#e6edf3; --muted:#8d96a0; --line:#30363d; --card:#161b22;
    --pass:#3fb950; --pass-bg:#12261e; --fail:#f85149; --fail-bg:#2d1517; --skip:#8d96a0; --skip-bg:#21262d; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 28px 24px 64px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 36px 0 10px; display: flex; gap: 10px; align-items: baseline; }
h2 small { color: var(--muted); font-weight: normal; font-size: 14px; }
.meta { color: var(--muted); margin: 0 0 20px; }
.meta code { color: var(--fg); }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0 10px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 18px; min-width: 130px; }
.card b { display: block; font-size: 28px; line-height: 1.1; }
.card.pass b { color: var(--pass); } .card.fail b { color: var(--fail); } .card.skip b { color: var(--skip); }
.bar { display: flex; height: 10px; border-radius: 5px; overflow: hidden; background: var(--line); margin: 8px 0 4px; }
.bar span { display: block; height: 100%; }
.bar .p { background: var(--pass); } .bar .f { background: var(--fail); } .bar .s { background: var(--skip); }
.verdict { font-size: 17px; margin: 18px 0 0; font-weight: 600; }
.verdict.ok { color: var(--pass); } .verdict.bad { color: var(--fail); }
.failures { background: var(--fail-bg); border: 1px solid var(--fail); border-radius: 10px; padding: 10px 18px; margin-top: 18px; }
.failures li { margin: 4px 0; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th, td { text-align: left; vertical-align: top; padding: 8px 10px; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); font-weight: 600; }
col.r { width: 70px; } col.c { width: 25%; } col.s { width: 15%; } col.w { width: 80px; } col.t { width: 70px; }
tr.fail td { background: var(--fail-bg); }
tr:target td { outline: 2px solid var(--fail); outline-offset: -2px; }
.badge { display: inline-block; font-size: 11px; font-weight: 700; padding: 2px 7px; border-radius: 10px; letter-spacing: .04em; }
.badge.pass { color: var(--pass); background: var(--pass-bg); }
.badge.fail { color: var(--fail); background: var(--fail-bg); border: 1px solid var(--fail); }
.badge.skip { color: var(--skip); background: var(--skip-bg); }
.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; font-weight: 600; }
.title { color: var(--muted); font-size: 13px; margin-top: 2px; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.note { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
.time { color: var(--muted); font-size: 13px; white-space: nowrap; text-align: right; }
footer { color: var(--muted); font-size: 13px; margin-top: 40px; }
@media print { .failures { break-inside: avoid; } tr { break-inside: avoid; } }
</style>
</head>
<body>
<main>
<h1>wsproof probe: {{.R.Role}} under test</h1>
<p class="meta">Target <code>{{.R.Target}}</code>{{if .R.Identity}} · identity <code>{{.R.Identity}}</code>{{end}}{{if .R.Peer}} · client <code>{{.R.Peer}}</code>{{end}}<br>
{{.Started}} · {{.Duration}} · {{.R.Tool}} {{.R.Version}} · spec {{.R.Spec}}</p>

<div class="cards">
  <div class="card"><b>{{.Total}}</b>cases</div>
  <div class="card pass"><b>{{.R.Passed}}</b>passed</div>
  <div class="card fail"><b>{{.R.Failed}}</b>failed</div>
  <div class="card skip"><b>{{.R.Skipped}}</b>skipped</div>
</div>
<div class="bar" role="img" aria-label="{{.R.Passed}} passed, {{.R.Failed}} failed, {{.R.Skipped}} skipped">
  <span class="p" style="width: {{pct .PassPct}}%"></span><span class="f" style="width: {{pct .FailPct}}%"></span><span class="s" style="width: {{pct .SkipPct}}%"></span>
</div>
{{if .Failures}}
<p class="verdict bad">{{.R.Failed}} case{{if gt .R.Failed 1}}s{{end}} failed: the {{.R.Role}} does not do what the spec requires there.</p>
<div class="failures"><ul>
{{range .Failures}}<li><a href="#{{.ID}}" class="id">{{.ID}}</a>: expected {{.Expected}}, got <span class="mono">{{.Got}}</span></li>
{{end}}</ul></div>
{{else}}
<p class="verdict ok">Every case that ran passed{{if .R.Skipped}} ({{.R.Skipped}} skipped: see the notes){{end}}.</p>
{{end}}

{{range .Groups}}
<h2>{{.Name}} <small>{{len .Cases}} case{{if gt (len .Cases) 1}}s{{end}}{{if .Fail}}, {{.Fail}} failed{{end}}</small></h2>
<table>
<colgroup><col class="r"><col class="c"><col class="s"><col class="w"><col><col><col class="t"></colgroup>
<thead><tr><th>Result</th><th>Case</th><th>Spec section</th><th>Rows</th><th>Expected</th><th>Got</th><th>Time</th></tr></thead>
<tbody>
{{range .Cases}}<tr id="{{.ID}}" class="{{.Result}}">
<td><span class="badge {{.Result}}">{{upper .Result}}</span></td>
<td><div class="id">{{.ID}}</div><div class="title">{{.Title}}</div></td>
<td>{{.Section}}</td>
<td class="mono">{{join .Rows}}</td>
<td class="mono">{{.Expected}}</td>
<td><div class="mono">{{.Got}}</div>{{if .Note}}<div class="note">{{.Note}}</div>{{end}}</td>
<td class="time">{{ms .Millis}}</td>
</tr>
{{end}}</tbody>
</table>
{{end}}
{{if .R.NotDriven}}
<h2>Rows not driven <small>what a remote peer cannot make happen</small></h2>
<table>
<colgroup><col class="c"><col></colgroup>
<thead><tr><th>Rows</th><th>Why</th></tr></thead>
<tbody>
{{range .R.NotDriven}}<tr><td class="mono">{{join .Rows}}</td><td>{{.Reason}}</td></tr>
{{end}}</tbody>
</table>
{{end}}
<footer>Generated by <span class="mono">wsproof probe {{.R.Role}}</span>. Close codes and reasons are those of the spec's Errors table;
framing cases follow RFC 6455. Strings received from the peer are shown escaped.</footer>
</main>
</body>
</html>
`

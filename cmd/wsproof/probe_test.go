package main

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsproof/wsproof/conformance"
)

// The probe's cases run against our server and clients in the server and
// client packages (TestConformance) and in client/js; testdata/probe.txt
// runs the command end to end. These tests pin the terminal table.

// TestProbeTableWidth: every line of the summary fits 100 columns, however
// long the ids, the peer's text (multi-byte, with control characters) and
// the notes are, and every skip prints its reason.
func TestProbeTableWidth(t *testing.T) {
	long := strings.Repeat("ünïcödé peer text ", 30) + "\x1b[31m\r\n"
	rep := &conformance.Report{Role: "server", Cases: []conformance.Result{
		{ID: "response-signed-by-other-registered-key", Rows: []string{"S4", "S6", "S16", "S20"}, Result: conformance.Pass,
			Got: `close 4003 "authentication failed"`, CodeNotChecked: "not in diagnostic mode, and 14 codes share close code 4003"},
		{ID: strings.Repeat("very-long-case-id-", 5), Result: conformance.Fail, Expected: long, Got: long, Note: long, Section: long},
		{ID: "response-channel-binding-missing", Result: conformance.Skip, Got: "skipped: the server does not demand tls-exporter binding",
			Note: "the server does not demand tls-exporter binding (it said \"none\") " + long},
		{ID: "keepalive-no-pong", Result: conformance.Skip, Got: "skipped: needs a Ping wait", Note: "needs a Ping wait (ServerTarget.PingWait; probe: --ping-wait)"},
	}, NotDriven: []conformance.RowGap{{Rows: []string{"S22", "S23"}, Reason: long}}}
	rep.Tally()
	var b bytes.Buffer
	printTable(&b, rep)
	out := b.String()
	for i, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > tableWidth {
			t.Errorf("line %d has %d columns: %q", i+1, n, line)
		}
		if strings.ContainsAny(line, "\x1b\r") {
			t.Errorf("line %d has a control character: %q", i+1, line)
		}
	}
	for _, want := range []string{
		"PASS* response-signed-by-other-registered-key",
		"Skipped:\n  response-channel-binding-missing: the server does not demand tls-exporter binding",
		"  keepalive-no-pong: needs a Ping wait (ServerTarget.PingWait; probe: --ping-wait)",
		"* 1 passing cases checked the close code and reason text, not the exact spec code",
		"4 cases: 1 passed, 1 failed, 2 skipped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	var p bytes.Buffer
	newProgress(&p, 4).finish(rep.Cases[1])
	for _, line := range strings.Split(p.String(), "\n") {
		if n := utf8.RuneCountInString(line); n > tableWidth {
			t.Errorf("progress line has %d columns: %q", n, line)
		}
	}
}

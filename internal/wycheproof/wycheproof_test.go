package wycheproof

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestTally checks that every case lands in exactly one column, and that a
// disagreement is reported with what was wanted and what happened.
func TestTally(t *testing.T) {
	decisions := map[string]Decision{"Ok": {Accept: true, Reason: "fine"}, "No": {Reason: "not fine"}}
	tl := NewTally("f.json")
	run := func(c Case, v Verdict, accepted bool) { tl.Record(c, "op", v, accepted, "got") }
	in := func(c Case) Verdict {
		v, ok := InProfile(c, decisions)
		if !ok {
			t.Fatalf("tcId %d: %s", c.TcID, v.Reason)
		}
		return v
	}
	valid := Case{TcID: 1, Result: Valid}
	invalid := Case{TcID: 2, Result: Invalid}
	okCase := Case{TcID: 3, Result: Acceptable, Flags: []string{"Ok"}}
	noCase := Case{TcID: 4, Result: Acceptable, Flags: []string{"Ok", "No"}}
	run(valid, in(valid), true)
	run(invalid, in(invalid), false)
	run(okCase, in(okCase), true)
	run(noCase, in(noCase), false)
	run(Case{TcID: 5, Result: Valid}, OutOfProfile("HS256"), false)
	run(Case{TcID: 6, Result: Invalid}, in(invalid), true) // disagreement
	run(Case{TcID: 7, Result: Valid}, OutOfProfile("HS256"), true)

	if tl.Cases != 7 || tl.ValidAccepted != 1 || tl.InvalidRefused != 1 || tl.AcceptableDecided != 2 ||
		tl.OutOfProfile != 1 || len(tl.Disagreements) != 2 {
		t.Fatalf("tally %+v", tl)
	}
	if s := tl.Disagreements[0].String(); !strings.Contains(s, "tcId 6 (invalid)") || !strings.Contains(s, "want refuse; got got") {
		t.Errorf("disagreement reads %q", s)
	}
	if s := tl.Disagreements[1].String(); !strings.Contains(s, "want refuse (HS256)") {
		t.Errorf("disagreement reads %q", s)
	}
	if _, ok := InProfile(Case{Result: Acceptable, Flags: []string{"Unknown"}}, decisions); ok {
		t.Error("an acceptable case with an undecided flag passed")
	}
	if _, ok := InProfile(Case{Result: Acceptable}, decisions); ok {
		t.Error("an acceptable case without flags passed")
	}
	if got := Span([]Case{{TcID: 9}, {TcID: 3}, {TcID: 5}}); got != "3-9" {
		t.Errorf("Span = %q", got)
	}
}

func TestHex(t *testing.T) {
	var v struct{ H Hex }
	if err := json.Unmarshal([]byte(`{"H":"00ff"}`), &v); err != nil || string(v.H) != "\x00\xff" {
		t.Fatalf("%x, %v", v.H, err)
	}
	if err := json.Unmarshal([]byte(`{"H":"0g"}`), &v); err == nil {
		t.Fatal("bad hex accepted")
	}
}

package conformance

import (
	"slices"
	"strings"
	"testing"

	"github.com/wsproof/wsproof/internal/vectorfile"
)

// TestScriptsAccounted: every session vector is run against a remote peer
// by a case, or names what a remote peer cannot do (Remote), or is listed
// in undriven with the suite's reason; never two of these. The cases that
// drive a script drive every row it names, and each case and script named
// exists, in the right role.
func TestScriptsAccounted(t *testing.T) {
	vs, err := scripts()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]Case{}
	for _, c := range ServerCases() {
		cases["server/"+c.ID] = c
	}
	for _, c := range ClientCases() {
		cases["client/"+c.ID] = c
	}
	byScript := map[string][]Case{}
	for id, ss := range caseScripts {
		found := false
		for _, role := range []string{"server", "client"} {
			if c, ok := cases[role+"/"+id]; ok {
				found = true
				for _, s := range ss {
					byScript[role+"/"+s] = append(byScript[role+"/"+s], c)
				}
			}
		}
		if !found {
			t.Errorf("caseScripts names %q, which is no case", id)
		}
	}
	known := map[string]bool{}
	for _, v := range vs {
		known[v.ID] = true
		cs := byScript[v.Role+"/"+v.ID]
		_, listed := undrivenWhy(v.ID)
		n := 0
		for _, b := range []bool{len(cs) > 0, v.Remote() != "", listed} {
			if b {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: driven by %d cases, Remote %q, in undriven %v: want exactly one of the three", v.ID, len(cs), v.Remote(), listed)
		}
		for _, r := range v.Rows {
			if len(cs) > 0 && !slices.ContainsFunc(cs, func(c Case) bool { return slices.Contains(c.Rows, r) }) {
				t.Errorf("%s: no case that drives it drives its row %s", v.ID, r)
			}
		}
	}
	for k := range byScript {
		if _, id, _ := strings.Cut(k, "/"); !known[id] {
			t.Errorf("caseScripts names script %q, which is not a session vector of that role", k)
		}
	}
	for id := range undriven {
		if p, ok := strings.CutSuffix(id, "*"); ok {
			if !slices.ContainsFunc(vs, func(v vectorfile.SessionVector) bool { return strings.HasPrefix(v.ID, p) }) {
				t.Errorf("undriven names %q, which matches no session vector", id)
			}
		} else if !known[id] {
			t.Errorf("undriven names %q, which is not a session vector", id)
		}
	}
}

// TestRowsNotDriven: each run's report accounts for every row of its
// role's state machine: driven by a case of the run, or listed with a
// reason.
func TestRowsNotDriven(t *testing.T) {
	vs, err := scripts()
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"server", "client"} {
		var cases []Case
		if role == "server" {
			cases = ServerCases()
		} else {
			cases = ClientCases()
		}
		gaps := rowsNotDriven(role, cases, "left out")
		accounted := map[string]bool{}
		for _, c := range cases {
			for _, r := range c.Rows {
				accounted[r] = true
			}
		}
		for _, g := range gaps {
			if g.Reason == "" || len(g.Rows) == 0 {
				t.Errorf("%s: a gap without rows or reason: %+v", role, g)
			}
			for _, r := range g.Rows {
				if accounted[r] {
					t.Errorf("%s: row %s is driven and listed as not driven", role, r)
				}
				accounted[r] = true
			}
		}
		for _, v := range vs {
			for _, r := range v.Rows {
				if v.Role == role && !accounted[r] {
					t.Errorf("%s: row %s of %s is neither driven nor listed", role, r, v.ID)
				}
			}
		}
		for r := range unscripted {
			if (r[0] == 'S') == (role == "server") && !accounted[r] {
				t.Errorf("%s: unscripted row %s is neither driven nor listed", role, r)
			}
		}
	}
}

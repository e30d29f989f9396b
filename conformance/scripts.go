package conformance

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/internal/vectors/sessions"
)

// The session vectors (spec section "Session vectors";
// testdata/session-vectors.json, made by internal/vectors/sessions) are
// scripts through each role's state machine. The suites' session cases are
// the remote runs of those scripts: caseScripts says which scripts each case
// drives, and the report's rows_not_driven names every row of the role's
// state machine that no case of the run drives, with the reason: for a row
// of a script that a remote peer cannot drive, the script's own
// (vectorfile.SessionVector.Remote); for a script a remote peer could drive
// but no case does, the suite's (undriven); for a row that no script has,
// unscripted's.

// scripts are the session vectors, made once.
var scripts = sync.OnceValues(func() ([]vectorfile.SessionVector, error) {
	f, err := sessions.Generate()
	if err != nil {
		return nil, fmt.Errorf("conformance: the session vectors: %w", err)
	}
	return f.Vectors, nil
})

// caseScripts are the session vectors each case drives against a remote
// peer, with the peer's own timers: together, the cases of a script drive
// every row it names.
var caseScripts = map[string][]string{
	// The server suite.
	"handshake-valid":                  {"server-handshake", "server-handshake-channel-binding"},
	"binary-before-response":           {"server-handshake-binary"},
	"response-oversized":               {"server-handshake-text-too-large"},
	"binary-oversized-before-response": {"server-handshake-binary-too-large"},
	"silent-socket":                    {"server-handshake-timeout"},
	"peer-close-challenged":            {"server-handshake-peer-close"},
	"abandon-handshakes":               {"server-handshake-lost"},
	"open-binary-oversized":            {"server-binary-too-large"},
	"open-text-oversized":              {"server-text-too-large"},
	"open-text-message":                {"server-text-in-open"},
	"refresh-valid":                    {"server-refresh"},
	"refresh-unanswered":               {"server-refresh-unanswered"},
	"refresh-late-response":            {"server-refresh-late-response"},
	"response-refresh-other-key":       {"server-refresh-other-key"},
	"refresh-then-text":                {"server-refresh-text-outstanding"},
	"keepalive-no-pong":                {"server-keepalive"},
	"keepalive-pong":                   {"server-keepalive"},
	"keepalive-messages":               {"server-keepalive-messages"},
	"final-token":                      {"server-final-token"},
	"final-token-message":              {"server-final-token-message"},
	"peer-close-open":                  {"server-peer-close"},
	"abandon-session":                  {"server-lost"},

	// The client suite.
	"challenge-valid":               {"client-handshake"},
	"challenge-oversized":           {"client-handshake-too-large"},
	"binary-before-challenge":       {"client-handshake-binary"},
	"accept-before-challenge":       {"client-handshake-accept-first"},
	"challenge-wrong-issuer":        {"client-handshake-other-identity"},
	"await-challenge-timeout":       {"client-handshake-timeout"},
	"await-accept-timeout":          {"client-handshake-timeout-accept"},
	"accept-oversized":              {"client-accept-too-large"},
	"binary-before-accept":          {"client-accept-binary"},
	"rechallenge-before-accept":     {"client-accept-challenge-again"},
	"accept-expired":                {"client-accept-expired"},
	"accept-without-max-size":       {"client-accept-without-max-size"},
	"binary-in-open-and-refreshing": {"client-deliver", "client-refresh"},
	"binary-over-application-limit": {"client-binary-too-large"},
	"rechallenge-oversized":         {"client-open-text-too-large"},
	"accept-without-response":       {"client-open-accept"},
	"rechallenge-other-socket":      {"client-rechallenge-other-socket"},
	"rechallenge-outlives-token":    {"client-rechallenge-outlives-token"},
	"refreshing-response-reflected": {"client-refreshing-text"},
	"refreshing-accept-oversized":   {"client-refreshing-too-large"},
	"refreshing-binary-oversized":   {"client-refreshing-binary-too-large"},
	"keepalive-client-no-pong":      {"client-keepalive"},
	"keepalive-client-pong":         {"client-keepalive"},
	"challenge-unbound-on-tls":      {"client-handshake-tls-unbound"},
	"challenge-unbound-on-tls12":    {"client-handshake-tls12-unbound"},
}

// undriven are the scripts that a remote peer could drive (their Remote
// is "") and that no case drives, with the reason; a key that ends in "*"
// names every script whose id it begins.
var undriven = map[string]string{
	"server-handshake-refused": "after the server's Close frame the suite answers it and the connection ends: what a CLOSED " +
		"socket does with a later message (nothing) cannot be seen from the wire",
	"server-handshake-late-response": "a response sent at the handshake deadline races the server's timer; either way the " +
		"server closes with handshake_timeout, which silent-socket shows",
	"server-deliver":            "delivery is seen by the server's application only",
	"server-refresh-late-timer": "a timer that fires late is the server's own scheduling",
	"server-keepalive-catch-up": "a Ping due when a message arrives races the server's timer against the message",
	"client-handshake-tls-unbound-allowed": "needs a client configured for a server behind a TLS-terminating proxy " +
		"(allow_unbound), a setting of the client that a remote peer cannot change; challenge-valid runs the default",
	"client-lost":         retryReason,
	"client-peer-close-*": retryReason,
}

// retryReason is why no case drives the rows whose outcome is the client's
// retry decision.
const retryReason = "the outcome is the client's retry decision (spec section \"Retry\"), seen only in whether it " +
	"connects again: the suite cannot tell that from its harness's next connection, and a client that never " +
	"reconnects conforms (a retry is allowed, never required)"

// undrivenWhy is undriven's reason for script id, where a key that ends in
// "*" stands for every id it is a prefix of.
func undrivenWhy(id string) (string, bool) {
	if why, ok := undriven[id]; ok {
		return why, true
	}
	for k, why := range undriven {
		if p, ok := strings.CutSuffix(k, "*"); ok && strings.HasPrefix(id, p) {
			return why, true
		}
	}
	return "", false
}

// unscripted are the rows that no session vector has (spec section
// "Session vectors": the HTTP upgrade, and a failure inside the server),
// with why no case drives them; the others are driven by the opening
// handshake's cases.
var unscripted = map[string]string{
	"S1": "the suite paces its connections under the server's rate limits (--rate) and retries a 429; provoking one " +
		"takes load the suite does not send",
	"S2":  "",
	"S3":  "",
	"S4":  "",
	"S5":  "a limit reached between the upgrade and the signature is a race inside the server",
	"S32": "needs a failure inside the server",
	"C1":  "an upgrade refused with an HTTP status ends the attempt before the state machine starts; " + retryReason,
	"C2":  "",
}

// undrivenReason is why no case of a run drives script v: its own reason,
// the suite's, or leftOut when the case that drives it is left out of the
// run.
func undrivenReason(v *vectorfile.SessionVector, leftOut string) string {
	if why := v.Remote(); why != "" {
		return why
	}
	if why, ok := undrivenWhy(v.ID); ok {
		return why
	}
	for _, ss := range caseScripts {
		if slices.Contains(ss, v.ID) {
			return leftOut // a case drives it, in another run
		}
	}
	return "no case drives " + v.ID
}

// rowsNotDriven are the rows of role's state machine ("server" or
// "client") that the cases of a run do not drive, grouped by reason, in
// row order. leftOut is why a script whose cases this run leaves out is
// not driven.
func rowsNotDriven(role string, cases []Case, leftOut string) []RowGap {
	vs, err := scripts()
	if err != nil {
		return []RowGap{{Reason: err.Error()}}
	}
	driven, drivenScripts := map[string]bool{}, map[string]bool{}
	for _, c := range cases {
		for _, r := range c.Rows {
			driven[r] = true
		}
		for _, s := range caseScripts[c.ID] {
			drivenScripts[s] = true
		}
	}
	prefix := "S"
	if role == vectorfile.SessionClientRole {
		prefix = "C"
	}
	why := map[string][]string{} // row -> reasons
	add := func(row, reason string) {
		if !driven[row] && reason != "" && !slices.Contains(why[row], reason) {
			why[row] = append(why[row], reason)
		}
	}
	for i := range vs {
		v := &vs[i]
		if v.Role != role || drivenScripts[v.ID] {
			continue
		}
		for _, r := range v.Rows {
			add(r, undrivenReason(v, leftOut))
		}
	}
	for r, reason := range unscripted {
		if strings.HasPrefix(r, prefix) {
			add(r, reason)
		}
	}
	byReason := map[string][]string{}
	for r, reasons := range why {
		sort.Strings(reasons)
		k := strings.Join(reasons, "; ")
		byReason[k] = append(byReason[k], r)
	}
	var gaps []RowGap
	for reason, rows := range byReason {
		slices.SortFunc(rows, byRow)
		gaps = append(gaps, RowGap{Rows: rows, Reason: reason})
	}
	slices.SortFunc(gaps, func(a, b RowGap) int { return byRow(a.Rows[0], b.Rows[0]) })
	return gaps
}

// byRow orders rows by number: S2 before S10.
func byRow(a, b string) int {
	na, _ := strconv.Atoi(a[1:])
	nb, _ := strconv.Atoi(b[1:])
	return na - nb
}

// scriptRows are the rows of the session vectors that case id runs whole:
// the rows of a case that states none (the keepalive cases, each of which
// runs part of a script, and the cases that drive further rows, state
// theirs).
func scriptRows(id string) []string {
	vs, err := scripts()
	if err != nil {
		return nil
	}
	var rows []string
	for _, s := range caseScripts[id] {
		for i := range vs {
			if vs[i].ID == s {
				rows = append(rows, vs[i].Rows...)
			}
		}
	}
	slices.SortFunc(rows, byRow)
	return slices.Compact(rows)
}

// scriptsOf are the session vectors case id drives, for the report.
func scriptsOf(id string) []string { return slices.Clone(caseScripts[id]) }

// Package conformance is the wsproof conformance suite: the cases that test
// a server or a client against spec/wsproof-v1.md from the outside, over
// real sockets, and the runners that play the other side.
//
// The server suite (ServerCases) answers the challenge a server really
// sends with a response that breaks one rule of the spec's procedure
// "Server: verifying a response", abuses the transport (RFC 6455 framing,
// the opening handshake, sizes and deadlines), or drives the session after
// the accept (rows of spec section "Server state machine"). The client
// suite (ClientCases) is a misbehaving server: one connection per case,
// each a bad challenge, a bad accept, a message out of turn, or a control
// the client must complete.
//
// Another implementation runs a suite from its own tests, one subtest per
// case, named by its id:
//
//	func TestConformance(t *testing.T) {
//		conformance.TestServer(t, &conformance.ServerTarget{URL: url, ...})
//	}
//
// TestExampleServer, in this package's example_test.go, is those lines in
// full against a server of this module, compiled and run with the
// package's tests.
//
// RunServer and RunClient run a suite without package testing and return a
// Report; the command "wsproof probe" is built on them.
//
// # Exact outcomes
//
// A negative case expects one code of the spec's Errors table. The wire
// cannot always say which: the fourteen authentication failures share close
// code 4003 and one reason text (spec section "Uniform denials and kid
// enumeration"). The rule the suites apply is that of spec section
// "Diagnostic reasons":
//
//   - When the target says that the peer runs in diagnostic mode
//     (ServerTarget.Diagnostic, ClientTarget.Diagnostic), every negative
//     case requires the exact code: the close reason must be the code's
//     diagnostic reason, "authentication failed [unknown_key]". A plain
//     reason, or one that names another code, fails the case.
//   - Otherwise a case whose close code one code owns is still exact: the
//     close code says which failure it was, and the reason text must be the
//     table's.
//   - Otherwise (a close code several codes share) the case is judged on
//     close code and reason text, and a passing Result says in
//     CodeNotChecked that the exact code was not checked, and why.
//
// Our own server and clients run the suites in diagnostic mode, so that a
// case passes only for the failure it was written for.
//
// # Message cases
//
// Most negative cases of the server suite are one message that breaks one
// rule: ResponseCases is their table, each case with the function that
// makes its message from a valid exchange (a ResponseInput). The suite
// makes each from the challenge a live server sent; the generator of the
// repository's test vectors (testdata/vectors.json) makes the cases marked
// Vector from the vectors' fixed keys, so that a vector and the case of its
// id are one definition.
//
// # Session vectors
//
// The session vectors of spec section "Session vectors" are scripts
// through each role's state machine. A session case runs one or more of
// them against the peer, over real sockets and with the peer's own timers
// (Case.Scripts). A remote run drives every row that spec section names as
// drivable from the outside: for a server, all but S1, S5, S22 to S32 and
// S35 (load, registry changes, the application, a shutdown, a failure
// inside it, a closed socket), with S8 only given Fixtures.Expiring; for a
// client, all but C1, C23 to C29 (its retry decision, which shows only in
// whether it connects again, and its application), with C13, C14 and C22
// only given ClientTarget.PingWait and the TLS rows only given
// ClientTarget.TLSConfig; the TLS 1.2 row needs a client that offers TLS
// 1.2 and runs the cases one at a time, in order, since the suite caps the
// TLS version of the connection it expects for that case before the
// request names the case. A report's NotDriven names every row of the
// role's state machine that no case of the run drives, with the reason.
//
// # Fixtures and skips
//
// A case that needs what only the deployment can provide (a registered key
// that is denied, revoked, of another algorithm or whose validity ends
// during the run: ServerTarget.Fixtures; a TLS connection; the waits of the
// refresh and keepalive cases) is skipped when the target does not provide
// it, and its Result says why in Got and Note. No case is skipped silently.
// The client suite leaves out of a run the cases its target cannot have:
// the keepalive cases without ClientTarget.PingWait, the TLS cases without
// ClientTarget.TLSConfig, and the cases that need plain TCP with it.
package conformance

package conformance

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Key is a private key the suite signs with: a client key registered at the
// server under test, or a signing key of the suite's own server.
type Key struct {
	ID     string         // the key id (kid)
	Alg    keys.Algorithm // the one algorithm the key is registered for
	Signer crypto.Signer
}

// ServerTarget is a wsproof server under test, and what the server suite
// needs to know about it.
type ServerTarget struct {
	// URL is the server's endpoint, ws:// or wss://.
	URL string
	// TLSConfig is the TLS client configuration for a wss:// URL; nil
	// trusts the system roots.
	TLSConfig *tls.Config
	// Identity is the server identity, as clients expect it.
	Identity string
	// ServerKeys is the server's public key set, as clients pin it.
	ServerKeys *keys.PublicSet
	// Key is a client key the server accepts: registered, in every group
	// the server requires.
	Key Key
	// Diagnostic tells that the server runs in diagnostic mode (spec
	// section "Diagnostic reasons"): every negative case then checks the
	// exact spec code in the close reason.
	Diagnostic bool

	// Fixtures are further client keys registered at the server, which
	// some cases need (a denied key, a revoked one, a key of another
	// algorithm); a case whose fixture is missing is skipped, and says so.
	Fixtures Fixtures
	// Origin is an Origin the server allows, for a server that requires
	// one: every socket carries it, but those of the Origin cases.
	Origin string

	// HandshakeTimeout is the server's handshake deadline; 0 means 10 s.
	HandshakeTimeout time.Duration
	// HeaderTimeout is the longest the server may take to give up on
	// request headers that never end; 0 means 10 s.
	HeaderTimeout time.Duration
	// RefreshWait is how long the refresh cases wait for a re-challenge
	// after an accept; 0 skips them. The token lifetime always suffices.
	RefreshWait time.Duration
	// PingWait is how long the keepalive cases wait for the server's
	// first Ping after an accept; 0 skips them.
	PingWait time.Duration
}

// ClientTarget is a wsproof client under test, and what the client suite
// needs to know about it. The suite plays a misbehaving server: one
// connection per case, at ws://ADDR/case/ID.
type ClientTarget struct {
	// Connect runs the client under test once: it connects to url,
	// pinning serverKeys and expecting identity, and returns when the
	// connection has ended, whatever the outcome (the suite judges what
	// the client put on the wire, not the error Connect returns). nil
	// means that clients connect by themselves (RunClient only): to each
	// case's URL, or to ws://ADDR/ws once per case, in order.
	Connect func(ctx context.Context, url string, serverKeys *keys.PublicSet, identity string) error
	// Diagnostic tells that the client runs in diagnostic mode (spec
	// section "Diagnostic reasons"): every negative case then checks the
	// exact spec code in the close reason.
	Diagnostic bool

	// Keys are the suite's server keys: at least two signing keys, both
	// pinned, so that a challenge by the second tests rotation. nil:
	// keys made by GenerateServerKeys.
	Keys *keys.ServerKeys
	// Identity is the server identity of the suite's challenges; ""
	// means ws://ADDR/probe, which is not the URL of any case.
	Identity string
	// ClientAlg is the client key's algorithm, until a response shows it;
	// "" means ES256.
	ClientAlg keys.Algorithm
	// CaseTimeout is how long a case waits for the client at each step;
	// 0 means 5 s.
	CaseTimeout time.Duration
	// HandshakeWait is how long the handshake deadline cases wait for the
	// client to give up: longer than its deadline; 0 means 15 s.
	HandshakeWait time.Duration
	// PingWait is how long the keepalive cases wait for the client's first
	// Ping after the accept; 0 leaves them out of the run.
	PingWait time.Duration
	// TLSConfig, when set, makes the suite serve wss:// with it (a
	// certificate the client under test trusts: ThrowawayTLS makes one).
	// Every challenge then demands tls-exporter binding on TLS 1.3, and
	// the run has the TLS cases instead of those that need a connection
	// without TLS. nil: ws://.
	TLSConfig *tls.Config
}

// Case is one case of the suites, as the table defines it.
type Case struct {
	ID       string
	Group    string
	Section  string // the spec section, and step, the case tests
	Title    string
	Expected string        // the outcome the spec requires
	Code     protocol.Code // the error the peer must detect; "" for a control
	Rows     []string      // the rows of spec section "State machines" it drives
	// Scripts are the session vectors (spec section "Session vectors")
	// that the case runs against the peer, in part or whole.
	Scripts []string
	// Transport is where a client case runs: "" on any connection, "tls"
	// only over TLS (ClientTarget.TLSConfig), "plain" only without TLS.
	// Server cases run on any connection.
	Transport string
}

// ServerCases are the cases of the server suite, in the order they run.
func ServerCases() []Case { return infos((&serverProbe{key: &Key{}}).cases()) }

// ClientCases are the cases of the client suite, in the order they run,
// with the keepalive cases, which run only with ClientTarget.PingWait, and
// then the TLS cases, which run only with ClientTarget.TLSConfig (and the
// cases that need a connection without TLS only without it).
func ClientCases() []Case {
	var out []Case
	seen := map[string]bool{}
	runs := map[string]int{} // id -> 1: without TLS, 2: over TLS, 3: both
	for i, tlsOn := range []bool{false, true} {
		p := &clientProbe{cur: &Key{}, impostor: &Key{}, pingWait: time.Second, tls: tlsOn}
		for _, cc := range p.allCases() {
			runs[cc.id] |= 1 << i
			if !seen[cc.id] {
				seen[cc.id] = true
				out = append(out, cc.info())
			}
		}
	}
	for i := range out {
		out[i].Transport = map[int]string{1: "plain", 2: "tls", 3: ""}[runs[out[i].ID]]
	}
	return out
}

func infos(cs []probeCase) []Case {
	out := make([]Case, len(cs))
	for i, c := range cs {
		out[i] = c.info()
	}
	return out
}

// RunServer runs the server suite against target and returns its report.
// An error means that the run could not start (a bad target); a case that
// fails is in the report.
func RunServer(ctx context.Context, target *ServerTarget, o *Options) (*Report, error) {
	p, err := newServerProbe(target, o)
	if err != nil {
		return nil, err
	}
	cases := slices.DeleteFunc(p.cases(), func(pc probeCase) bool { return !o.selected(pc.id) })
	if len(cases) == 0 {
		return nil, errors.New("conformance: no case selected")
	}
	var prog func(Result)
	parallel := 0
	if o != nil {
		prog, parallel = o.Progress, o.Parallel
	}
	rep := &Report{Spec: "wsproof-v1", Role: "server", Target: p.u.Redacted(), Identity: target.Identity,
		Diagnostic: target.Diagnostic, Started: time.Now(), NotDriven: rowsNotDriven("server", infos(p.cases()), "")}
	rep.Cases = runCases(ctx, cases, parallel, target.Diagnostic, prog)
	rep.Millis = time.Since(rep.Started).Milliseconds()
	rep.Tally()
	return rep, nil
}

func newServerProbe(t *ServerTarget, o *Options) (*serverProbe, error) {
	u, err := url.Parse(t.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("conformance: the URL %q is not a ws:// or wss:// URL", t.URL)
	}
	if t.Identity == "" || t.ServerKeys == nil || t.Key.Signer == nil || t.Key.ID == "" {
		return nil, errors.New("conformance: the target needs Identity, ServerKeys and Key")
	}
	pc, err := protocol.NewClient(&protocol.ClientConfig{KeyID: t.Key.ID, Signer: t.Key.Signer, Algorithm: t.Key.Alg,
		ServerKeys: t.ServerKeys, ServerIdentity: t.Identity})
	if err != nil {
		return nil, fmt.Errorf("conformance: the target's Key: %w", err)
	}
	rate := 0.0
	if o != nil {
		rate = o.Rate
	}
	key := t.Key
	return &serverProbe{
		u: u, tlsConf: t.TLSConfig, identity: t.Identity, key: &key, fixtures: t.Fixtures, pc: pc, serverKeys: t.ServerKeys, origin: t.Origin,
		hsTimeout: orDefault(t.HandshakeTimeout, 10*time.Second), hdrTimeout: orDefault(t.HeaderTimeout, 10*time.Second),
		refreshWait: t.RefreshWait, pingWait: t.PingWait, pace: newPacer(rate),
	}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// RunClient runs the client suite on ln, which it closes, and returns its
// report. With target.Connect it drives the client through every case, one
// after the other; without, it waits until a client has connected for
// every case, or ctx ends, and reports the cases no client came for as
// skipped. Either way a plain GET of http://ADDR/cases.json describes the
// run for a test harness: the identity, the pinned key set and, for each
// case, its URL and what the suite expects.
func RunClient(ctx context.Context, ln net.Listener, target *ClientTarget, o *Options) (*Report, error) {
	p, err := newClientProbe(ln, target, o)
	if err != nil {
		ln.Close()
		return nil, err
	}
	hs := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10}
	if target.TLSConfig != nil {
		c := target.TLSConfig.Clone()
		c.NextProtos = []string{"http/1.1"} // a WebSocket upgrade is HTTP/1.1
		c.GetConfigForClient = p.configForClient(c)
		ln = tls.NewListener(ln, c)
	}
	go hs.Serve(ln)
	defer hs.Close()
	rep := &Report{Spec: "wsproof-v1", Role: "client", Target: p.base, Identity: p.identity, Diagnostic: target.Diagnostic,
		Started: time.Now(), NotDriven: p.rowsNotDriven()}
	if target.Connect != nil {
		p.drive(ctx, target.Connect)
	} else {
		select {
		case <-p.allDone:
		case <-ctx.Done():
		}
	}
	rep.Millis = time.Since(rep.Started).Milliseconds()
	p.mu.Lock()
	rep.Peer = p.peer
	for _, cc := range p.cases {
		res, ok := p.results[cc.id]
		if !ok {
			res = cc.result()
			res.Result, res.Got, res.Note = Skip, "skipped: no client connected for this case", "no client connected for this case"
		}
		rep.Cases = append(rep.Cases, res)
	}
	p.mu.Unlock()
	rep.Tally()
	return rep, nil
}

// ClientURLs are the cases' URLs of a client suite listening at addr, by
// case id, in the order of the run, for a client that is told where to
// connect.
func ClientURLs(addr string, target *ClientTarget, o *Options) []string {
	var urls []string
	p := &clientProbe{cur: &Key{}, impostor: &Key{}, pingWait: target.PingWait, tls: target.TLSConfig != nil}
	for _, cc := range p.allCases() {
		if o.selected(cc.id) {
			urls = append(urls, p.scheme()+"://"+addr+"/case/"+cc.id)
		}
	}
	return urls
}

// GenerateServerKeys makes server keys for the client suite: a current
// ES256 signing key, a previous Ed25519 one and a token key.
func GenerateServerKeys() (*keys.ServerKeys, error) {
	es, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		return nil, err
	}
	ed, err := keys.Generate(keys.EdDSA, nil)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, keys.TokenKeySize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return &keys.ServerKeys{
		Signing: []keys.SigningKey{
			{KeyID: "probe-es256-" + randB64(9), Algorithm: keys.ES256, Signer: es},
			{KeyID: "probe-ed25519-" + randB64(9), Algorithm: keys.EdDSA, Signer: ed},
		},
		Token: []keys.TokenKey{{KeyID: "probe-tok-" + randB64(9), Algorithm: keys.TokenDir, Secret: secret}},
	}, nil
}

// TestServer runs the server suite against target, one subtest per case,
// named by the case's id: a failed case fails its subtest with what the
// spec expects and what the server did, and a skipped case skips it with
// the reason. The cases run concurrently, as RunServer runs them, whatever
// the -parallel flag; the report is returned for further checks.
func TestServer(t *testing.T, target *ServerTarget) *Report {
	t.Helper()
	ids := make([]string, 0)
	for _, c := range ServerCases() {
		ids = append(ids, c.ID)
	}
	return testSuite(t, ids, func(ctx context.Context, o *Options) (*Report, error) { return RunServer(ctx, target, o) })
}

// TestClient runs the client suite against the client target.Connect
// drives, one subtest per case, as TestServer does. The suite listens on a
// loopback port of its own.
func TestClient(t *testing.T, target *ClientTarget) *Report {
	t.Helper()
	if target.Connect == nil {
		t.Fatal("conformance: TestClient needs ClientTarget.Connect")
	}
	var ids []string
	p := &clientProbe{cur: &Key{}, impostor: &Key{}, pingWait: target.PingWait, tls: target.TLSConfig != nil}
	for _, cc := range p.allCases() {
		ids = append(ids, cc.id)
	}
	return testSuite(t, ids, func(ctx context.Context, o *Options) (*Report, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		return RunClient(ctx, ln, target, o)
	})
}

// testSuite runs a suite in the background and reports each case in its
// own subtest, in table order, as its result arrives.
func testSuite(t *testing.T, ids []string, run func(context.Context, *Options) (*Report, error)) *Report {
	t.Helper()
	results := map[string]chan Result{}
	for _, id := range ids {
		results[id] = make(chan Result, 1)
	}
	type outcome struct {
		rep *Report
		err error
	}
	done := make(chan outcome, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		rep, err := run(ctx, &Options{Parallel: 8, Progress: func(r Result) {
			if ch, ok := results[r.ID]; ok {
				ch <- r
			}
		}})
		done <- outcome{rep, err}
	}()
	var out outcome
	finished := false
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			var r Result
			got := false
			if !finished {
				select {
				case r = <-results[id]:
					got = true
				case out = <-done:
					finished = true
				}
			}
			if !got { // the run has ended: every result it had is buffered
				select {
				case r = <-results[id]:
					got = true
				default:
					if out.err != nil {
						t.Fatal(out.err)
					}
					t.Fatal("the suite ended without running the case")
				}
			}
			reportResult(t, r)
		})
	}
	if !finished {
		out = <-done
	}
	if out.err != nil {
		t.Fatal(out.err)
	}
	return out.rep
}

func reportResult(t *testing.T, r Result) {
	t.Helper()
	switch r.Result {
	case Fail:
		t.Errorf("%s\n    expected %s\n    got      %s", r.Section, r.Expected, r.Got)
		if r.Note != "" {
			t.Errorf("    note     %s", r.Note)
		}
	case Skip:
		t.Skip(r.Note)
	default:
		t.Logf("got %s", r.Got)
		if r.Note != "" {
			t.Logf("note %s", r.Note)
		}
		if r.CodeNotChecked != "" {
			t.Logf("passed without checking the exact code: %s", r.CodeNotChecked)
		}
	}
}

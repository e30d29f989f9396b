package conformance

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// newClientProbe makes the misbehaving server for target, listening on ln.
func newClientProbe(ln net.Listener, t *ClientTarget, o *Options) (*clientProbe, error) {
	sk := t.Keys
	if sk == nil {
		var err error
		if sk, err = GenerateServerKeys(); err != nil {
			return nil, err
		}
	}
	if len(sk.Signing) < 2 {
		return nil, errors.New("conformance: the client suite needs two server signing keys")
	}
	impostorSigner, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		return nil, err
	}
	pinnedJSON, err := keys.MarshalPublicSet(sk.Public())
	if err != nil {
		return nil, err
	}
	scheme := "ws"
	if t.TLSConfig != nil {
		scheme = "wss"
	}
	base := scheme + "://" + ln.Addr().String()
	id := t.Identity
	if id == "" {
		id = base + "/probe"
	}
	alg := t.ClientAlg
	if alg == "" {
		alg = keys.ES256
	}
	cur, prev := sk.Signing[0], sk.Signing[1]
	p := &clientProbe{
		base:        base,
		identity:    id,
		pinned:      pinnedJSON,
		pinnedSet:   sk.Public(),
		cur:         &Key{ID: cur.KeyID, Alg: cur.Algorithm, Signer: cur.Signer},
		prev:        &Key{ID: prev.KeyID, Alg: prev.Algorithm, Signer: prev.Signer},
		impostor:    &Key{ID: "impostor-" + randB64(9), Alg: keys.ES256, Signer: impostorSigner},
		caseTimeout: orDefault(t.CaseTimeout, 5*time.Second),
		hsWait:      orDefault(t.HandshakeWait, 15*time.Second),
		pingWait:    t.PingWait,
		diag:        t.Diagnostic,
		tls:         t.TLSConfig != nil,
		clientAlg:   alg,
		results:     map[string]Result{},
		started:     map[string]bool{},
		waiters:     map[string]chan Result{},
		allDone:     make(chan struct{}),
	}
	if o != nil {
		p.prog = o.Progress
	}
	p.cases = slices.DeleteFunc(p.allCases(), func(cc clientCase) bool { return !o.selected(cc.id) })
	if len(p.cases) == 0 {
		return nil, errors.New("conformance: no case selected")
	}
	for _, cc := range p.cases {
		p.waiters[cc.id] = make(chan Result, 1)
	}
	return p, nil
}

// clientProbe is the misbehaving server.
type clientProbe struct {
	base        string // ws://ADDR, or wss://ADDR with tls
	tls         bool   // the suite serves wss://
	identity    string
	pinned      []byte          // the public key set, as JSON
	pinnedSet   *keys.PublicSet // the same
	diag        bool            // the client is in diagnostic mode
	cur, prev   *Key
	impostor    *Key
	caseTimeout time.Duration
	hsWait      time.Duration // C4: how long to wait for the client's handshake deadline
	pingWait    time.Duration // C13, C14: how long to wait for its first Ping; 0: not run
	cases       []clientCase
	prog        func(Result)
	progMu      sync.Mutex

	mu        sync.Mutex
	clientAlg keys.Algorithm  // learned from the client's responses
	peer      string          // the User-Agent of the first client
	seq       int             // the next case for /ws
	started   map[string]bool // the cases a connection has come for
	results   map[string]Result
	waiters   map[string]chan Result
	allDone   chan struct{}
}

// Upgrade variants: what the 101 response selects.
const (
	upgradeNormal = iota
	upgradeNoProtocol
	upgradeOtherProtocol
	upgradeExtension
)

// clientCase is one connection's misbehaviour and the client's required
// answer.
type clientCase struct {
	id, group, section, title string
	code                      protocol.Code // the client's close; "" with success or upgrade set
	success                   bool          // the client must complete the exchange
	upgrade                   int
	fails                     []int // RFC 6455 close codes that fail the connection, which may also just drop
	allow                     int   // responses the client may still send after the stimulus
	patient                   bool  // the client's close may take --handshake-wait, not --case-timeout
	tls12                     bool  // the suite caps the case's connection at TLS 1.2 (a TLS run only)
	rows                      []string
	expect                    string // replaces the expectation derived from the fields
	// script runs the case up to the client's answer; it may decide the
	// case itself (a verdict through s.r), else the fields above judge
	// what the client does next.
	script func(s *csess) error
}

func (cc clientCase) expected() string {
	switch {
	case cc.expect != "":
		return cc.expect
	case cc.success:
		return "the client completes the exchange"
	case cc.upgrade != upgradeNormal:
		return "the client fails the connection without a response"
	case len(cc.fails) > 0:
		var alts []string
		for _, c := range cc.fails {
			alts = append(alts, fmt.Sprintf("close %d", c))
		}
		if cc.code != "" {
			alts = append(alts, expClose(cc.code))
		}
		return strings.Join(alts, ", or ") + ", or the connection dropped; no response"
	}
	return expClose(cc.code) + ", no response"
}

func (cc clientCase) result() Result {
	return Result{ID: cc.id, Group: cc.group, Title: cc.title, Section: cc.section, Rows: cc.rows, Scripts: scriptsOf(cc.id),
		Expected: cc.expected()}
}

func (cc clientCase) info() Case {
	return Case{ID: cc.id, Group: cc.group, Section: cc.section, Title: cc.title, Expected: cc.expected(), Code: cc.code,
		Rows: cc.rows, Scripts: scriptsOf(cc.id)}
}

// scheme is the URL scheme of the suite's cases.
func (p *clientProbe) scheme() string {
	if p.tls {
		return "wss"
	}
	return "ws"
}

func (p *clientProbe) byID(id string) (clientCase, bool) {
	for _, cc := range p.cases {
		if cc.id == id {
			return cc, true
		}
	}
	return clientCase{}, false
}

// ServeHTTP runs one case per upgrade: /case/NAME by name, any other path
// the next case in order. A plain GET lists the cases.
func (p *clientProbe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, named := strings.CutPrefix(r.URL.Path, "/case/")
	if r.URL.Path == "/cases.json" {
		p.serveCaseList(w, r)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "wsproof probe client: %d cases. Connect a wsproof client to %s://%s/case/NAME or to %s://%s/ws.\n\n",
			len(p.cases), p.scheme(), r.Host, p.scheme(), r.Host)
		for _, cc := range p.cases {
			fmt.Fprintf(w, "%-40s %s\n", cc.id, cc.expected())
		}
		return
	}
	var cc clientCase
	if named {
		var ok bool
		if cc, ok = p.byID(name); !ok {
			http.Error(w, "wsproof probe: no such case", http.StatusNotFound)
			return
		}
	} else {
		p.mu.Lock()
		if p.seq >= len(p.cases) {
			p.mu.Unlock()
			http.Error(w, "wsproof probe: every case has run", http.StatusGone)
			return
		}
		cc = p.cases[p.seq]
		p.seq++
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.started[cc.id] = true
	p.mu.Unlock()
	p.mu.Lock()
	if p.peer == "" {
		p.peer = oneLine(cell(r.Header.Get("User-Agent"), 80))
	}
	p.mu.Unlock()
	p.record(p.run(cc, w, r))
}

// serveCaseList describes the cases for a test harness: what to pin, what
// identity to expect, and for each case the URL to connect to and what the
// probe expects the client to do there.
func (p *clientProbe) serveCaseList(w http.ResponseWriter, r *http.Request) {
	type expect struct {
		Close   int    `json:"close,omitempty"`
		Reason  string `json:"reason,omitempty"`
		Code    string `json:"code,omitempty"`
		Success bool   `json:"success,omitempty"`
		Fail    bool   `json:"fail_connection,omitempty"`
	}
	type item struct {
		ID      string   `json:"id"`
		URL     string   `json:"url"`
		Section string   `json:"section"`
		Rows    []string `json:"rows,omitempty"`
		Title   string   `json:"title"`
		Expect  expect   `json:"expect"`
	}
	list := struct {
		Identity   string          `json:"identity"`
		ServerKeys json.RawMessage `json:"server_keys"`
		Cases      []item          `json:"cases"`
		NotDriven  []RowGap        `json:"rows_not_driven"`
	}{Identity: p.identity, ServerKeys: p.pinned, NotDriven: p.rowsNotDriven()}
	for _, cc := range p.cases {
		e := expect{Success: cc.success, Fail: cc.upgrade != upgradeNormal || len(cc.fails) > 0}
		if cc.code != "" {
			e.Close, e.Reason, e.Code = cc.code.CloseCode(), cc.code.Reason(), string(cc.code)
		}
		list.Cases = append(list.Cases, item{ID: cc.id, URL: p.scheme() + "://" + r.Host + "/case/" + cc.id, Section: cc.section, Rows: cc.rows, Title: cc.title, Expect: e})
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(list)
}

func (p *clientProbe) record(res Result) {
	p.mu.Lock()
	_, again := p.results[res.ID]
	p.results[res.ID] = res
	n := len(p.results)
	ch := p.waiters[res.ID]
	p.mu.Unlock()
	if !again {
		if p.prog != nil {
			p.progMu.Lock()
			p.prog(res)
			p.progMu.Unlock()
		}
		if n == len(p.cases) {
			close(p.allDone)
		}
	}
	select {
	case ch <- res:
	default:
	}
}

// run upgrades the request as the case says and runs the case on it.
func (p *clientProbe) run(cc clientCase, hw http.ResponseWriter, req *http.Request) Result {
	r := &caseRun{res: cc.result(), diag: p.diag}
	start := time.Now()
	func() {
		defer func() {
			if v := recover(); v != nil {
				r.fail(fmt.Sprintf("the suite failed: %v", v))
			}
		}()
		p.runCase(cc, r, hw, req)
	}()
	return r.finish(time.Since(start))
}

func (p *clientProbe) runCase(cc clientCase, r *caseRun, hw http.ResponseWriter, req *http.Request) {
	key := req.Header.Get("Sec-WebSocket-Key")
	offered := false
	for _, h := range req.Header.Values("Sec-WebSocket-Protocol") {
		for v := range strings.SplitSeq(h, ",") {
			offered = offered || strings.TrimSpace(v) == protocol.Subprotocol
		}
	}
	switch {
	case req.Method != http.MethodGet || key == "" || req.Header.Get("Sec-WebSocket-Version") != "13":
		http.Error(hw, "wsproof probe: not a WebSocket upgrade", http.StatusBadRequest)
		r.fail("the client's upgrade request is not a WebSocket upgrade (RFC 6455 section 4.1)")
		return
	case !offered:
		http.Error(hw, protocol.CodeSubprotocolRequired.Reason(), http.StatusBadRequest)
		r.fail("the client did not offer " + protocol.Subprotocol)
		return
	}
	if req.Header.Get("Cookie") != "" || req.Header.Get("Authorization") != "" {
		r.note("the client sent a Cookie or Authorization header: credentials must travel in band only")
	}
	hj, ok := hw.(http.Hijacker)
	if !ok {
		r.fail("the probe cannot take over the connection")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		r.fail("the probe cannot take over the connection: " + err.Error())
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", wsAccept(key))
	switch cc.upgrade {
	case upgradeNormal:
		fmt.Fprintf(&b, "Sec-WebSocket-Protocol: %s\r\n", protocol.Subprotocol)
	case upgradeOtherProtocol:
		b.WriteString("Sec-WebSocket-Protocol: wsproof.v2\r\n")
	case upgradeExtension:
		fmt.Fprintf(&b, "Sec-WebSocket-Protocol: %s\r\n", protocol.Subprotocol)
		b.WriteString("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n")
	}
	b.WriteString("\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		r.fail("cannot write the 101 response: " + err.Error())
		return
	}
	var sid [protocol.SocketIDSize]byte
	rand.Read(sid[:])
	s := &csess{p: p, r: r, w: newWire(conn, brw.Reader, false), sid: b64u.Encode(sid[:]), wait: p.caseTimeout}
	if tc, ok := conn.(*tls.Conn); ok {
		// RFC 9266: only TLS 1.3 has the exporter every challenge then
		// binds to (spec section "TLS channel binding").
		st := tc.ConnectionState()
		s.tlsVer = st.Version
		if st.Version == tls.VersionTLS12 && !cc.tls12 {
			r.skip("the suite capped this connection at TLS 1.2 for challenge-unbound-on-tls12, " +
				"the first case no connection had come for: run the cases one at a time, in order")
			s.w.sendClose(1000, "")
			return
		}
		if st.Version == tls.VersionTLS13 {
			if s.exporter, err = st.ExportKeyingMaterial(protocol.ExporterLabel, nil, 32); err != nil {
				r.fail("the probe cannot export the TLS keying material: " + err.Error())
				return
			}
		}
	}
	if cc.patient {
		s.wait = p.hsWait
	}
	if err := cc.script(s); err != nil {
		r.fail(err.Error())
		s.addViolations()
		return
	}
	if r.verdict { // the script judged, or skipped, the case
		s.w.sendClose(1000, "")
		return
	}
	switch {
	case cc.success:
		s.w.sendClose(1000, "")
		ev := s.nextControl()
		ok := ev.kind == evEOF || ev.kind == evClose && ev.code == 1000
		s.judge(ok, s.summary+"; "+describe(ev, p.caseTimeout))
	case cc.upgrade != upgradeNormal || len(cc.fails) > 0:
		texts, ev := s.drain()
		ok := texts == 0 && (ev.kind == evEOF || ev.kind == evClose)
		if len(cc.fails) > 0 && ev.kind == evClose {
			ok = ok && (slices.Contains(cc.fails, ev.code) || cc.code != "" && r.closeIs(ev, cc.code))
		}
		got := describe(ev, p.caseTimeout)
		if texts > 0 {
			got = fmt.Sprintf("%d response(s), then %s", texts, got)
		}
		s.judge(ok, got)
	default:
		texts, ev := s.drain()
		ok := r.closeIs(ev, cc.code) && texts <= cc.allow
		got := describe(ev, s.wait)
		if texts > cc.allow {
			got = fmt.Sprintf("a response to the bad message, then %s", got)
		}
		s.judge(ok, got)
	}
}

// csess is one case's connection, in the server role.
type csess struct {
	p        *clientProbe
	r        *caseRun
	w        *wire
	sid      string
	exporter []byte // the connection's tls-exporter value; nil without TLS 1.3
	tlsVer   uint16 // the connection's TLS version; 0 without TLS
	last     string // the last challenge sent
	nonce    string // its nonce
	response string // the client's last response
	summary  string // what a success case did
	open     bool   // an accept was sent: the client may send application messages
	wait     time.Duration
}

func (s *csess) deadline() time.Time { return time.Now().Add(s.wait) }

// nextControl is the next event that is not an application message: a
// client may send those at any time after the accept.
func (s *csess) nextControl() event {
	for {
		ev := s.w.next(s.deadline())
		if ev.kind == evMessage && ev.op == opBinary && s.open {
			continue
		}
		return ev
	}
}

// drain reads until the client closes, the connection ends or the case
// times out, counting the text messages (responses) the client sends.
func (s *csess) drain() (texts int, last event) {
	for {
		ev := s.w.next(s.deadline())
		if ev.kind == evMessage {
			if ev.op == opText {
				texts++
			}
			continue
		}
		return texts, ev
	}
}

func (s *csess) addViolations() {
	if v := s.w.Violations(); len(v) > 0 {
		s.r.note("the client %s", strings.Join(v, "; "))
	}
}

// judge records the verdict, failing a client that broke RFC 6455.
func (s *csess) judge(ok bool, got string) {
	if v := s.w.Violations(); len(v) > 0 {
		s.addViolations()
		ok = false
	}
	s.r.judge(ok, got)
}

// claims are the claims of a valid challenge on this socket, with a fresh
// nonce.
func (s *csess) claims() *challengeClaims {
	now := time.Now().Unix()
	algs := make([]string, len(keys.Algorithms))
	for i, a := range keys.Algorithms {
		algs[i] = string(a)
	}
	cb := protocol.BindingNone
	if s.exporter != nil {
		cb = protocol.BindingTLSExporter
	}
	return &challengeClaims{Iss: s.p.identity, Sid: s.sid, Nonce: randB64(protocol.NonceSize), Iat: now, Exp: now + 30,
		Algs: algs, CB: cb}
}

// chal signs a challenge: the claims (edited by edit) under the header h
// with key k. The defaults are a valid challenge by the current key.
func (s *csess) chal(k *Key, h jobj, edit func(o jobj) jobj) (string, error) {
	if k == nil {
		k = s.p.cur
	}
	if h == nil {
		h = header(string(k.Alg), k.ID, protocol.TypChallenge)
	}
	c := s.claims()
	o := claimsObj(c)
	if edit != nil {
		o = edit(o)
	}
	msg, err := k.sign(rand.Reader, h.String(), o.String())
	if err != nil {
		return "", fmt.Errorf("the probe cannot sign: %w", err)
	}
	s.last, s.nonce = msg, c.Nonce
	return msg, nil
}

func (s *csess) send(msg string) error {
	if err := s.w.sendText(msg); err != nil {
		return fmt.Errorf("cannot send to the client: %w", err)
	}
	return nil
}

// challenge sends a valid challenge.
func (s *csess) challenge() error {
	msg, err := s.chal(nil, nil, nil)
	if err != nil {
		return err
	}
	return s.send(msg)
}

// readResponse reads the client's response to the last challenge and
// checks what the probe can check without the client's public key.
func (s *csess) readResponse() error {
	ev := s.nextControl()
	if ev.kind != evMessage {
		return fmt.Errorf("no response to a valid challenge: %s", describe(ev, s.p.caseTimeout))
	}
	if ev.op != opText {
		return errors.New("a binary message instead of the response")
	}
	msg := string(ev.data)
	if err := s.checkResponse(msg); err != nil {
		return fmt.Errorf("the response to a valid challenge is wrong: %w", err)
	}
	s.response = msg
	return nil
}

func (s *csess) checkResponse(msg string) error {
	h, pl, sig, ok := splitJWS(msg)
	if !ok || b64u.Check(sig) != nil {
		return errors.New("not a compact JWS")
	}
	hb, err1 := b64u.Decode(h)
	pb, err2 := b64u.Decode(pl)
	if err1 != nil || err2 != nil {
		return errors.New("a segment is not canonical base64url")
	}
	var hdr map[string]any
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return errors.New("the header is not JSON")
	}
	for name := range hdr {
		if name != "alg" && name != "kid" && name != "typ" {
			return fmt.Errorf("header member %q", name)
		}
	}
	if hdr["typ"] != protocol.TypResponse {
		return fmt.Errorf("typ is not %s", protocol.TypResponse)
	}
	alg, _ := hdr["alg"].(string)
	a, err := keys.ParseAlgorithm(alg)
	if err != nil {
		return fmt.Errorf("alg %q", alg)
	}
	if kid, _ := hdr["kid"].(string); kid == "" {
		return errors.New("no kid")
	}
	s.p.mu.Lock()
	s.p.clientAlg = a
	s.p.mu.Unlock()
	var cl map[string]any
	if err := json.Unmarshal(pb, &cl); err != nil {
		return errors.New("the payload is not JSON")
	}
	switch {
	case cl["aud"] != s.p.identity:
		return errors.New("aud is not the challenge's iss")
	case cl["sid"] != s.sid:
		return errors.New("sid is not the challenge's")
	case cl["nonce"] != s.nonce:
		return errors.New("nonce is not the challenge's")
	case cl["cha"] != sha256b64(s.last):
		return errors.New("cha is not the hash of the challenge")
	case s.exporter == nil && cl["cb"] != nil:
		return errors.New(`cb is present though the challenge said "none"`)
	case s.exporter != nil && cl["cb"] != b64u.Encode(s.exporter):
		return errors.New("cb is not the connection's tls-exporter value")
	}
	return nil
}

// accept sends an accept whose token expires in 300 s.
func (s *csess) accept() error {
	return s.sendAccept(s.acceptMsg(nil))
}

// sendAccept sends an accept; from then on the client may send
// application messages.
func (s *csess) sendAccept(msg string) error {
	s.open = true
	return s.send(msg)
}

// probeMaxSize is the max_size of the probe's accepts: the spec's default.
const probeMaxSize = 65536

func (s *csess) acceptMsg(edit func(o jobj) jobj) string {
	o := jobj{{"token", jstr("wsproof-probe-token." + randB64(48))}, {"sub", jstr("wsproof-probe")},
		{"groups", `["probe"]`}, {"exp", fmt.Sprint(time.Now().Unix() + 300)}, {"max_size", fmt.Sprint(probeMaxSize)}}
	if edit != nil {
		o = edit(o)
	}
	return o.String()
}

// handshake runs a valid exchange: challenge, response, accept.
func (s *csess) handshake() error {
	if err := s.challenge(); err != nil {
		return err
	}
	if err := s.readResponse(); err != nil {
		return err
	}
	return s.accept()
}

// rechallenge signs a re-challenge on this socket.
func (s *csess) rechallenge(k *Key, edit func(o jobj) jobj) (string, error) {
	return s.chal(k, nil, edit)
}

// Client-side sections the cases cite.
func cstep(n int) string { return step(secChallenge, n) }

const secAccept = "Client: processing an accept"

// input is what a challenge case is made from on this socket: the claims
// of a valid challenge, the probe's keys, and, for a re-challenge, the exp
// of the session's token. Live clocks may differ by a little: the cases at
// the skew allowance go an hour further.
func (s *csess) input(tokenExp int64) *ChallengeInput {
	s.p.mu.Lock()
	alg := s.p.clientAlg
	s.p.mu.Unlock()
	in := &ChallengeInput{Claims: *s.claims(), Signing: []Key{*s.p.cur}, Impostor: *s.p.impostor, ClientAlg: alg,
		TokenExp: tokenExp, Slack: time.Hour, Rand: rand.Reader}
	if s.p.prev != nil {
		in.Signing = append(in.Signing, *s.p.prev)
	}
	return in
}

// challengeCase is the run of a challenge case of the table: its challenge
// as the socket's first message, or, for a re-challenge, after a handshake
// whose token expires in 20 s. A valid challenge must get a correct
// response, and the accept then goes out.
func (p *clientProbe) challengeCase(cc ChallengeCase) clientCase {
	return clientCase{id: cc.ID, group: cc.Group, section: cc.Section, title: cc.Title, code: cc.Code, success: cc.Code == "",
		rows: cc.Rows, script: func(s *csess) error {
			var tokenExp int64
			if cc.Rechallenge {
				if err := s.challenge(); err != nil {
					return err
				}
				if err := s.readResponse(); err != nil {
					return err
				}
				tokenExp = time.Now().Unix() + 20
				if err := s.sendAccept(s.acceptMsg(func(o jobj) jobj { return o.set("exp", fmt.Sprint(tokenExp)) })); err != nil {
					return err
				}
			}
			in := s.input(tokenExp)
			if cc.assumes != nil {
				s.r.note("assumes %s", cc.assumes(in))
			}
			msg, err := cc.Build(in)
			var na notApplicable
			switch {
			case errors.As(err, &na):
				s.r.skip(string(na))
				return nil
			case err != nil:
				return fmt.Errorf("the suite cannot make the challenge: %w", err)
			}
			// The response must answer this challenge, with its sid.
			s.last = msg
			if c, err := parseChallenge([]byte(msg)); err == nil {
				s.sid, s.nonce = c.Sid, c.Nonce
			}
			if err := s.send(msg); err != nil || cc.Code != "" {
				return err
			}
			if err := s.readResponse(); err != nil {
				return err
			}
			s.summary = "valid response, accept taken"
			return s.accept()
		}}
}

func (p *clientProbe) allCases() []clientCase {
	var cs []clientCase
	add := func(c ...clientCase) { cs = append(cs, c...) }
	// bad sends one bad message in place of the challenge.
	bad := func(group, id, section, title string, code protocol.Code, msg func(s *csess) (string, error)) clientCase {
		return clientCase{id: id, group: group, section: section, title: title, code: code, script: func(s *csess) error {
			m, err := msg(s)
			if err != nil {
				return err
			}
			return s.send(m)
		}}
	}
	now := func() int64 { return time.Now().Unix() }

	for _, cc := range ChallengeCases() {
		if !(cc.NoTLS && p.tls) {
			add(p.challengeCase(cc))
		}
	}
	if p.tls {
		c12 := bad(gChallenge, "challenge-unbound-on-tls12", cstep(12),
			"Over TLS 1.2, which has no exporter value, a challenge whose cb is \"none\": a client not configured for a "+
				"TLS-terminating proxy refuses it.",
			protocol.CodeChannelBindingRequired, func(s *csess) (string, error) {
				if s.tlsVer != tls.VersionTLS12 {
					return "", errNotTLS12
				}
				return s.chal(nil, nil, nil) // no exporter: cb is "none"
			})
		c12.tls12 = true
		script := c12.script
		c12.script = func(s *csess) error {
			if err := script(s); errors.Is(err, errNotTLS12) {
				s.r.skip("the connection is not TLS 1.2: the client does not offer TLS 1.2 (it cannot be driven into " +
					"this row), or it did not run the cases one at a time, in order")
				return nil
			} else {
				return err
			}
		}
		add(c12)
		add(bad(gChallenge, "challenge-unbound-on-tls", cstep(12),
			"On a TLS connection, a challenge whose cb is \"none\": a client not configured for a TLS-terminating proxy refuses it.",
			protocol.CodeChannelBindingRequired, func(s *csess) (string, error) {
				return s.chal(nil, nil, func(o jobj) jobj { return o.set("cb", jstr(protocol.BindingNone)) })
			}))
	}
	add(clientCase{id: "challenge-fragmented", group: gControl, section: secFraming, success: true,
		title: "A valid challenge in three frames with a Ping between them (RFC 6455 section 5.4).",
		script: func(s *csess) error {
			msg, err := s.chal(nil, nil, nil)
			if err != nil {
				return err
			}
			m := []byte(msg)
			a, b := len(m)/3, 2*len(m)/3
			s.w.write(frame{op: opText, payload: m[:a], length: -1})
			s.w.write(frame{fin: true, op: opPing, payload: []byte("probe"), length: -1})
			s.w.write(frame{op: opContinuation, payload: m[a:b], length: -1})
			s.w.write(frame{fin: true, op: opContinuation, payload: m[b:], length: -1})
			if err := s.readResponse(); err != nil {
				return err
			}
			s.summary = "valid response"
			return s.accept()
		}})
	add(clientCase{id: "ping-before-challenge", group: gControl, section: secFraming, success: true,
		title: "A Ping before the challenge: control frames are allowed in every state.",
		script: func(s *csess) error {
			// next answers Pings and skips Pongs, so the Pong is read raw.
			s.w.send(opPing, []byte("wsproof-probe"))
			s.w.conn.SetReadDeadline(s.deadline())
			f, err := s.w.readFrame()
			if err != nil || f.op != opPong || string(f.payload) != "wsproof-probe" {
				return errors.New("no Pong echoing the Ping (RFC 6455 section 5.5.3)")
			}
			if err := s.handshake(); err != nil {
				return err
			}
			s.summary = "Pong, then a valid response"
			return nil
		}})
	add(clientCase{id: "accept-extra-members", group: gControl, section: step(secAccept, 2), success: true,
		title: "An accept with members the client does not know: it must ignore them.",
		script: func(s *csess) error {
			if err := s.challenge(); err != nil {
				return err
			}
			if err := s.readResponse(); err != nil {
				return err
			}
			s.summary = "valid response, accept taken"
			return s.sendAccept(s.acceptMsg(func(o jobj) jobj { return o.set("x-future", `[true]`).set("cnf", `{"jkt":"x"}`) }))
		}})

	const gState = "Client state machine"
	add(clientCase{id: "binary-before-challenge", group: gState, section: secClientSM, code: protocol.CodeUnexpectedMessage,
		title:  "A binary message before the challenge.",
		script: func(s *csess) error { return s.w.send(opBinary, []byte("application data before authentication")) }})
	add(bad(gState, "accept-before-challenge", secClientSM, "An accept before any challenge.", protocol.CodeUnexpectedMessage,
		func(s *csess) (string, error) { return s.acceptMsg(nil), nil }))
	afterResponse := func(id, section, title string, code protocol.Code, then func(s *csess) error) clientCase {
		return clientCase{id: id, group: gState, section: section, title: title, code: code, script: func(s *csess) error {
			if err := s.challenge(); err != nil {
				return err
			}
			if err := s.readResponse(); err != nil {
				return err
			}
			return then(s)
		}}
	}
	add(afterResponse("rechallenge-before-accept", secClientSM, "A second challenge instead of the accept.", protocol.CodeUnexpectedMessage,
		func(s *csess) error {
			msg, err := s.rechallenge(nil, nil)
			if err != nil {
				return err
			}
			return s.send(msg)
		}))
	add(afterResponse("response-reflected", secClientSM, "The client's own response sent back instead of the accept.", protocol.CodeUnexpectedMessage,
		func(s *csess) error { return s.send(s.response) }))
	add(afterResponse("binary-before-accept", secClientSM, "A binary message instead of the accept.", protocol.CodeUnexpectedMessage,
		func(s *csess) error { return s.w.send(opBinary, []byte("application data before the accept")) }))
	for _, c := range []struct {
		id, section, title string
		code               protocol.Code
		edit               func(o jobj) jobj
	}{
		{"accept-missing-token", step(secAccept, 2), "An accept without token.", protocol.CodeMalformed, func(o jobj) jobj { return o.del("token") }},
		{"accept-empty-token", step(secAccept, 2), "An accept whose token is empty.", protocol.CodeMalformed, func(o jobj) jobj { return o.set("token", `""`) }},
		{"accept-groups-not-array", step(secAccept, 2), "An accept whose groups is a string.", protocol.CodeMalformed, func(o jobj) jobj { return o.set("groups", jstr("probe")) }},
		{"accept-duplicate-member", step(secAccept, 2), "An accept naming token twice.", protocol.CodeMalformed, func(o jobj) jobj { return o.add("token", jstr("wsproof-probe.other")) }},
		{"accept-expired", step(secAccept, 3), "An accept whose exp passed an hour ago.", protocol.CodeTokenExpired, func(o jobj) jobj { return o.set("exp", fmt.Sprint(now()-3600)) }},
		{"accept-oversized", step(secAccept, 1), "An accept of more than 16384 octets.", protocol.CodeTooLarge, func(o jobj) jobj { return o.set("pad", jstr(strings.Repeat("w", 16400))) }},
	} {
		add(afterResponse(c.id, c.section, c.title, c.code, func(s *csess) error { return s.send(s.acceptMsg(c.edit)) }))
	}
	afterAccept := func(id, section, title string, code protocol.Code, then func(s *csess) error) clientCase {
		return clientCase{id: id, group: gState, section: section, title: title, code: code, script: func(s *csess) error {
			if err := s.handshake(); err != nil {
				return err
			}
			return then(s)
		}}
	}
	add(afterAccept("accept-without-response", secClientSM, "A second accept on the open socket, with no response outstanding.", protocol.CodeUnexpectedMessage,
		func(s *csess) error { return s.accept() }))
	twice := afterAccept("rechallenge-twice", secClientSM, "Two re-challenges without waiting for the answer: the second arrives in REFRESHING.", protocol.CodeUnexpectedMessage,
		func(s *csess) error {
			a, err := s.rechallenge(nil, nil)
			if err != nil {
				return err
			}
			b, err := s.rechallenge(nil, nil)
			if err != nil {
				return err
			}
			s.send(a)
			return s.send(b)
		})
	twice.allow = 1 // the answer to the first is legitimate
	add(twice)
	add(afterAccept("rechallenge-reflected-response", cstep(4), "The client's own response sent back as a re-challenge.", protocol.CodeWrongType,
		func(s *csess) error { return s.send(s.response) }))
	add(afterAccept("binary-over-application-limit", secLimits, "A binary message of 65537 octets: over the default application message limit.", protocol.CodeTooLarge,
		func(s *csess) error {
			s.r.note("assumes the client's default limit of 65536 octets")
			return s.w.send(opBinary, make([]byte, 65537))
		}))

	const gFraming = "Framing (RFC 6455)"
	frameCase := func(id, section, title string, send func(s *csess, good []byte) error, codes ...int) clientCase {
		return clientCase{id: id, group: gFraming, section: section, title: title, fails: codes, script: func(s *csess) error {
			good, err := s.chal(nil, nil, nil)
			if err != nil {
				return err
			}
			return send(s, []byte(good))
		}}
	}
	add(frameCase("frame-masked-by-server", "RFC 6455 section 5.1", "A valid challenge in a masked frame: a client must close the connection.",
		func(s *csess, good []byte) error {
			return s.w.write(frame{fin: true, op: opText, masked: true, payload: good, length: -1})
		}, 1002))
	add(frameCase("frame-rsv1-from-server", "RFC 6455 section 5.2", "A valid challenge with RSV1 set though no extension was negotiated.",
		func(s *csess, good []byte) error {
			return s.w.write(frame{fin: true, rsv: 4, op: opText, payload: good, length: -1})
		}, 1002))
	add(frameCase("frame-reserved-opcode-from-server", "RFC 6455 section 5.2", "A valid challenge under reserved data opcode 0x3.",
		func(s *csess, good []byte) error {
			return s.w.write(frame{fin: true, op: 0x3, payload: good, length: -1})
		}, 1002))
	add(frameCase("control-frame-too-long-from-server", "RFC 6455 section 5.5", "A Ping with a 126-octet payload before the challenge.",
		func(s *csess, good []byte) error {
			s.w.write(frame{fin: true, op: opPing, payload: make([]byte, 126), length: -1})
			return s.w.sendText(string(good))
		}, 1002))
	utf8Case := frameCase("challenge-invalid-utf8", "RFC 6455 section 8.1; "+cstep(2),
		"A text message that is not UTF-8 in place of the challenge: RFC 6455 fails the connection (1007), or the client refuses it as a challenge (malformed).",
		func(s *csess, _ []byte) error { return s.w.send(opText, []byte("eyJ\xff\xfe.e30.AA")) }, 1007)
	utf8Case.code = protocol.CodeMalformed
	add(utf8Case)

	const gOpening = "Opening handshake"
	for _, u := range []struct {
		id, title string
		variant   int
	}{
		{"subprotocol-not-selected", "The 101 response selects no subprotocol; a valid challenge follows.", upgradeNoProtocol},
		{"subprotocol-wrong", "The 101 response selects wsproof.v2, which the client did not offer; a valid challenge follows.", upgradeOtherProtocol},
		{"extension-accepted", "The 101 response accepts permessage-deflate; a valid challenge follows.", upgradeExtension},
	} {
		add(clientCase{id: u.id, group: gOpening, section: secOpening, upgrade: u.variant, title: u.title,
			script: func(s *csess) error {
				s.challenge() // the client may already be gone
				return nil
			}})
	}
	cs = append(cs, p.sessionCases()...)
	for i := range cs {
		switch {
		case cs[i].rows != nil:
		case clientCaseRows[cs[i].id] != nil:
			cs[i].rows = clientCaseRows[cs[i].id]
		default:
			cs[i].rows = scriptRows(cs[i].id)
		}
	}
	return cs
}

// drive runs connect against every case, one after the other, and waits
// for the suite's verdict on each.
func (p *clientProbe) drive(ctx context.Context, connect func(ctx context.Context, url string, serverKeys *keys.PublicSet, identity string) error) {
	for _, cc := range p.cases {
		if ctx.Err() != nil {
			return
		}
		limit := 2 * p.caseTimeout
		if cc.patient {
			limit += p.hsWait
		}
		cctx, cancel := context.WithTimeout(ctx, limit)
		err := connect(cctx, p.base+"/case/"+cc.id, p.pinnedSet, p.identity)
		cancel()
		select {
		case <-p.waiters[cc.id]:
		case <-time.After(p.caseTimeout):
			res := cc.result()
			res.Result, res.Got = Fail, "the suite saw no connection"
			if err != nil {
				res.Note = "Connect: " + oneLine(err.Error())
			}
			p.record(res)
		case <-ctx.Done():
			return
		}
	}
}

var errNotTLS12 = errors.New("conformance: the connection is not TLS 1.2")

// configForClient is the TLS listener's GetConfigForClient: it caps at TLS
// 1.2 the connection that comes for a tls12 case, when the client offers
// TLS 1.2. Which case a connection comes for is known only from its request,
// after the TLS handshake, so the suite takes it to be the first case of the
// run that no connection has come for yet: true of a client that runs the
// cases one at a time, in order, by their URLs or through /ws.
func (p *clientProbe) configForClient(base *tls.Config) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	capped := base.Clone()
	capped.MaxVersion = tls.VersionTLS12
	return func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		p.mu.Lock()
		i := slices.IndexFunc(p.cases, func(cc clientCase) bool { return !p.started[cc.id] })
		p.mu.Unlock()
		if i >= 0 && p.cases[i].tls12 && slices.Contains(h.SupportedVersions, tls.VersionTLS12) {
			return capped, nil
		}
		return nil, nil
	}
}

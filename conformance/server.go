package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// pacer spaces new connections so that a run stays under a server's
// handshake rate limits (spec section "Limits"): the suite tests rules, not
// throughput.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newPacer(rate float64) *pacer {
	p := &pacer{}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) / rate)
	}
	return p
}

func (p *pacer) wait(ctx context.Context) error {
	if p.interval == 0 {
		return ctx.Err()
	}
	p.mu.Lock()
	now := time.Now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(p.interval)
	p.mu.Unlock()
	return sleepCtx(ctx, time.Until(at))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serverProbe holds what every server case needs.
type serverProbe struct {
	u           *url.URL
	tlsConf     *tls.Config
	identity    string
	key         *Key // accepted
	denied      *Key // known but denied; may be nil
	pc          *protocol.Client
	origin      string
	hsTimeout   time.Duration
	hdrTimeout  time.Duration
	refreshWait time.Duration
	pingWait    time.Duration
	pace        *pacer

	unknownOnce sync.Once
	unknown     *Key
	unknownErr  error
}

// slack is how much later than a deadline a server may act and still pass:
// timers, scheduling and the network are not exact.
func slack(d time.Duration) time.Duration { return max(time.Second, d/5) }

// wait is how long a case waits for the server's answer: past the handshake
// deadline, so that a server that never answers is reported as closing with
// handshake_timeout, or not closing at all.
func (p *serverProbe) wait() time.Duration { return p.hsTimeout + slack(p.hsTimeout) + time.Second }

// dial opens a socket within the probe's rate, retrying an upgrade refused
// with 429 or 503 (rate_limited) a few times with backoff. Sockets carry
// the --origin Origin unless the case sets its own, for deployments that
// require one.
func (p *serverProbe) dial(ctx context.Context, r *caseRun, o dialOptions) (*wire, *http.Response, error) {
	if o.origin == "" {
		o.origin = p.origin
	}
	for attempt := 0; ; attempt++ {
		if err := p.paceCase(ctx, r); err != nil {
			return nil, nil, err
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		w, resp, err := dialWire(dctx, p.u, p.tlsConf, o)
		cancel()
		var ue *upgradeError
		if errors.As(err, &ue) && (ue.status == http.StatusTooManyRequests || ue.status == http.StatusServiceUnavailable) && attempt < 6 {
			start := time.Now()
			err := sleepCtx(ctx, min(250*time.Millisecond<<attempt, 4*time.Second))
			r.paced += time.Since(start)
			if err != nil {
				return nil, nil, err
			}
			continue
		}
		return w, resp, err
	}
}

// paceCase waits for the case's turn to connect; the wait does not count
// in the case's time.
func (p *serverProbe) paceCase(ctx context.Context, r *caseRun) error {
	start := time.Now()
	err := p.pace.wait(ctx)
	r.paced += time.Since(start)
	return err
}

func describeDialErr(err error) string {
	var ue *upgradeError
	if errors.As(err, &ue) {
		return fmt.Sprintf("HTTP %d", ue.status)
	}
	return oneLine(err.Error())
}

// liveChallenge is the challenge a server sent on a socket.
type liveChallenge struct {
	raw      string
	c        *challengeClaims
	exporter []byte // the probe's tls-exporter value for the socket, or nil
	at       time.Time
}

// open opens a socket and reads its challenge. On failure the case has
// failed and ok is false.
func (p *serverProbe) open(ctx context.Context, r *caseRun, o dialOptions) (*wire, *liveChallenge, bool) {
	w, _, err := p.dial(ctx, r, o)
	if err != nil {
		if ctx.Err() != nil {
			r.skip("interrupted")
		} else {
			r.fail("cannot open a socket: " + describeDialErr(err))
		}
		return nil, nil, false
	}
	ch, ok := p.readChallenge(r, w)
	if !ok {
		w.Close()
	}
	return w, ch, ok
}

// onSocket is the run of a case on one socket: it opens the socket, hands
// it and its challenge to body, and closes it when body returns.
func (p *serverProbe) onSocket(body func(ctx context.Context, r *caseRun, w *wire, ch *liveChallenge)) func(context.Context, *caseRun) {
	return func(ctx context.Context, r *caseRun) {
		w, ch, ok := p.open(ctx, r, dialOptions{})
		if !ok {
			return
		}
		defer w.Close()
		body(ctx, r, w, ch)
	}
}

func (p *serverProbe) readChallenge(r *caseRun, w *wire) (*liveChallenge, bool) {
	ev := w.next(time.Now().Add(p.wait()))
	if ev.kind != evMessage || ev.op != opText {
		r.fail("no challenge: " + describe(ev, p.wait()))
		return nil, false
	}
	c, err := parseChallenge(ev.data)
	if err != nil {
		r.fail(fmt.Sprintf("the first message is not a challenge (%v)", err))
		return nil, false
	}
	return &liveChallenge{raw: string(ev.data), c: c, exporter: w.exporter, at: ev.at}, true
}

// describe says what an event was, for the report. Peer strings are quoted.
func describe(ev event, wait time.Duration) string {
	switch ev.kind {
	case evMessage:
		if ev.op == opBinary {
			return fmt.Sprintf("binary message (%d octets)", len(ev.data))
		}
		if a, ok := parseAcceptish(ev.data); ok {
			if a.MaxSize == nil {
				return fmt.Sprintf("accept without max_size (sub %q, token of %d octets)", a.Sub, len(a.Token))
			}
			return fmt.Sprintf("accept (sub %q, token of %d octets)", a.Sub, len(a.Token))
		}
		return fmt.Sprintf("text message (%d octets)", len(ev.data))
	case evClose:
		if ev.code == 1005 {
			return "close without a status code"
		}
		return fmt.Sprintf("close %d %q", ev.code, ev.reason)
	case evEOF:
		return "connection closed without a Close frame"
	case evTimeout:
		return fmt.Sprintf("no answer within %s", wait)
	case evPing:
		return "a Ping"
	}
	return "unreadable frames: " + ev.err.Error()
}

type acceptMsg struct {
	Token   string   `json:"token"`
	Sub     string   `json:"sub"`
	Groups  []string `json:"groups"`
	Exp     int64    `json:"exp"`
	MaxSize *int64   `json:"max_size"`
}

// parseAccept reads a message as an accept, leniently: the probes only need
// to tell an accept from anything else. An accept without max_size, which
// the spec requires, is not one.
func parseAccept(b []byte) (*acceptMsg, bool) {
	a, ok := parseAcceptish(b)
	return a, ok && a.MaxSize != nil
}

// parseAcceptish is parseAccept without the max_size rule, for the report.
func parseAcceptish(b []byte) (*acceptMsg, bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	var a acceptMsg
	if err := json.Unmarshal(b, &a); err != nil || a.Token == "" {
		return nil, false
	}
	return &a, true
}

// observe waits for the server's answer and judges it: an accept when code
// is empty, else a close with code and its fixed reason. It also fails a
// server that broke RFC 6455 framing on the way.
func (p *serverProbe) observe(r *caseRun, w *wire, code protocol.Code) event {
	ev := w.next(time.Now().Add(p.wait()))
	var ok bool
	if code == "" {
		_, ok = parseAccept(ev.data)
		ok = ok && ev.kind == evMessage && ev.op == opText
	} else {
		ok = r.closeIs(ev, code)
	}
	p.judge(r, w, ok, describe(ev, p.wait()))
	return ev
}

// judge records the verdict, failing it when the server broke RFC 6455.
func (p *serverProbe) judge(r *caseRun, w *wire, ok bool, got string) {
	if v := w.Violations(); len(v) > 0 {
		r.note("the server %s", strings.Join(v, "; "))
		ok = false
	}
	r.judge(ok, got)
}

// claims are the claims of a correct response to ch.
func (p *serverProbe) claims(ch *liveChallenge) jobj {
	o := jobj{{"aud", jstr(ch.c.Iss)}, {"sid", jstr(ch.c.Sid)}, {"nonce", jstr(ch.c.Nonce)}, {"cha", jstr(sha256b64(ch.raw))}}
	if ch.c.CB == protocol.BindingTLSExporter && ch.exporter != nil {
		o = o.set("cb", jstr(b64u.Encode(ch.exporter)))
	}
	return o
}

// hdr is the correct response header of k.
func hdr(k *Key) jobj { return header(string(k.Alg), k.ID, protocol.TypResponse) }

// signed signs header and payload with k, failing the case if it cannot.
func signed(r *caseRun, k *Key, header, payload string) string {
	return sealed(r, signingInput(header, payload), k.sigOver)
}

// sealed is signing input si completed with the signature sig makes over
// it, failing the case if the probe cannot sign.
func sealed(r *caseRun, si string, sig func(si string) ([]byte, error)) string {
	s, err := sig(si)
	if err != nil {
		r.fail("the probe cannot sign: " + err.Error())
		return ""
	}
	return si + "." + b64u.Encode(s)
}

// good is a correct response to ch by the accepted key.
func (p *serverProbe) good(r *caseRun, ch *liveChallenge) string {
	return signed(r, p.key, hdr(p.key).String(), p.claims(ch).String())
}

// withSig is a correct response by the accepted key whose signature segment
// is replaced by sig(signing input).
func (p *serverProbe) withSig(r *caseRun, ch *liveChallenge, sig func(si string) (string, error)) string {
	si := signingInput(hdr(p.key).String(), p.claims(ch).String())
	s, err := sig(si)
	if err != nil {
		r.fail("the probe cannot sign: " + err.Error())
		return ""
	}
	return si + "." + s
}

func randB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return b64u.Encode(b)
}

// unknownKey is a fresh key of the accepted key's algorithm that no
// registry holds.
func (p *serverProbe) unknownKey() (*Key, error) {
	p.unknownOnce.Do(func() {
		s, err := keys.Generate(p.key.Alg, nil)
		if err != nil {
			p.unknownErr = err
			return
		}
		p.unknown = &Key{ID: "wsproof-probe-unknown-" + randB64(9), Alg: p.key.Alg, Signer: s}
	})
	return p.unknown, p.unknownErr
}

// Spec sections the cases cite.
const (
	secResponse  = "Server: verifying a response"
	secChallenge = "Client: verifying a challenge"
	secOpening   = "Transport: Opening handshake"
	secFraming   = "Transport: Messages and framing"
	secServerSM  = "Server state machine"
	secLimits    = "Limits"
	secSockets   = "Socket IDs, nonces and time"
	secReplay    = "Security considerations: Replay"
	secRefresh   = "Refresh"
	secClientSM  = "Client state machine"
)

func step(section string, n int) string { return fmt.Sprintf("%s, step %d", section, n) }

// build makes the message a case sends in answer to a live challenge. It
// may fail or skip the case instead, through r.
type build func(r *caseRun, ch *liveChallenge) string

// resp is the common case: answer the live challenge with one text message
// and expect code ("" for an accept).
func (p *serverProbe) resp(group, id, section, title string, code protocol.Code, b build) probeCase {
	exp := expAccept
	if code != "" {
		exp = expClose(code)
	}
	rows := []string{"S16"} // a text message in CHALLENGED
	if code == protocol.CodeTooLarge {
		rows = []string{"S14"}
	}
	return probeCase{id: id, group: group, section: section, title: title, expect: exp, rows: rows,
		run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
			msg := b(r, ch)
			if r.verdict {
				return
			}
			if err := w.sendText(msg); err != nil {
				r.fail("cannot send the response: " + err.Error())
				return
			}
			p.observe(r, w, code)
		})}
}

// headerCase answers with a response by the accepted key under the given
// header text.
func (p *serverProbe) headerCase(group, id, section, title string, code protocol.Code, h func(ch *liveChallenge) string) probeCase {
	return p.resp(group, id, section, title, code, func(r *caseRun, ch *liveChallenge) string {
		return signed(r, p.key, h(ch), p.claims(ch).String())
	})
}

// claimsCase answers with a response by the accepted key whose claims are
// edited by edit.
func (p *serverProbe) claimsCase(group, id, section, title string, code protocol.Code, edit func(o jobj, ch *liveChallenge) string) probeCase {
	return p.resp(group, id, section, title, code, func(r *caseRun, ch *liveChallenge) string {
		return signed(r, p.key, hdr(p.key).String(), edit(p.claims(ch), ch))
	})
}

func (p *serverProbe) cases() []probeCase {
	var cs []probeCase
	add := func(c ...probeCase) { cs = append(cs, c...) }
	A := p.key
	typ := protocol.TypResponse

	// Positive controls: without them, every refusal below could be a
	// server that refuses everything.
	const gHandshake = "Handshake (controls)"
	add(probeCase{id: "handshake-valid", group: gHandshake, section: secResponse,
		title:  "A conforming client: the challenge verifies under the pinned keys and the server accepts the response.",
		expect: "a challenge that verifies, then " + expAccept,
		run: func(ctx context.Context, r *caseRun) {
			w, resp, err := p.dial(ctx, r, dialOptions{})
			if err != nil {
				r.fail("cannot open a socket: " + describeDialErr(err))
				return
			}
			defer w.Close()
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != protocol.Subprotocol {
				r.fail(fmt.Sprintf("101 selects subprotocol %q", got))
				return
			}
			ch, ok := p.readChallenge(r, w)
			if !ok {
				return
			}
			sess, ok := p.authenticate(r, w, ch)
			if !ok {
				return
			}
			r.note("cb %q, algs %s", ch.c.CB, strings.Join(ch.c.Algs, ","))
			p.judge(r, w, true, fmt.Sprintf("accept (sub %q, token expires in %s)", sess.Subject, time.Until(sess.Expiry).Round(time.Second)))
		}})
	add(probeCase{id: "challenge-fresh-per-socket", group: gHandshake, section: secSockets,
		title:  "Two sockets get different socketIDs and nonces of the sizes the spec fixes, and a lifetime of 1 to 300 s.",
		expect: "distinct sid (16-32 octets) and nonce (32 octets)",
		run: func(ctx context.Context, r *caseRun) {
			var chs []*liveChallenge
			for range 2 {
				w, ch, ok := p.open(ctx, r, dialOptions{})
				if !ok {
					return
				}
				w.Close()
				chs = append(chs, ch)
			}
			var problems []string
			for _, ch := range chs {
				sid, err1 := b64u.Decode(ch.c.Sid)
				nonce, err2 := b64u.Decode(ch.c.Nonce)
				if err1 != nil || len(sid) < 16 || len(sid) > 32 {
					problems = append(problems, "sid is not base64url of 16 to 32 octets")
				}
				if err2 != nil || len(nonce) != 32 {
					problems = append(problems, "nonce is not base64url of 32 octets")
				}
				if life := ch.c.Exp - ch.c.Iat; life < 1 || life > 300 {
					problems = append(problems, fmt.Sprintf("lifetime is %d s", life))
				}
			}
			if chs[0].c.Sid == chs[1].c.Sid {
				problems = append(problems, "two sockets share a sid")
			}
			if chs[0].c.Nonce == chs[1].c.Nonce {
				problems = append(problems, "two challenges share a nonce")
			}
			if len(problems) > 0 {
				r.fail(strings.Join(slices.Compact(problems), "; "))
				return
			}
			r.pass(fmt.Sprintf("distinct; lifetime %d s", chs[0].c.Exp-chs[0].c.Iat))
		}})
	add(probeCase{id: "response-extra-claims-ignored", group: gHandshake, section: step(secResponse, 19),
		title:  "A valid response that also claims groups, a subject and an unknown member: the server ignores them, and the accept does not echo them.",
		expect: expAccept + " with the registry's sub and groups",
		run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
			const claimed = "wsproof-probe-claimed"
			cl := p.claims(ch).set("groups", `["`+claimed+`"]`).set("sub", jstr(claimed)).set("x-future", "1")
			msg := signed(r, A, hdr(A).String(), cl.String())
			if r.verdict {
				return
			}
			w.sendText(msg)
			ev := w.next(time.Now().Add(p.wait()))
			a, ok := parseAccept(ev.data)
			ok = ok && ev.kind == evMessage && a.Sub != claimed && !slices.Contains(a.Groups, claimed)
			p.judge(r, w, ok, describe(ev, p.wait()))
		})})
	add(probeCase{id: "response-fragmented", group: gHandshake, section: secFraming,
		title:  "A valid response split into three frames with a Ping between them: one message, as RFC 6455 section 5.4 allows.",
		expect: expAccept,
		run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
			msg := []byte(p.good(r, ch))
			if r.verdict {
				return
			}
			a, b := len(msg)/3, 2*len(msg)/3
			w.write(frame{op: opText, masked: true, payload: msg[:a], length: -1})
			w.write(frame{fin: true, op: opPing, masked: true, payload: []byte("probe"), length: -1})
			w.write(frame{op: opContinuation, masked: true, payload: msg[a:b], length: -1})
			w.write(frame{fin: true, op: opContinuation, masked: true, payload: msg[b:], length: -1})
			p.observe(r, w, "")
		})})
	add(p.resp(gHandshake, "response-at-size-limit", secLimits,
		"A valid response padded with an ignored claim to the 4096-octet limit (or 4095 when base64url cannot make 4096).", "",
		func(r *caseRun, ch *liveChallenge) string { return p.padded(r, ch, protocol.MaxHandshakeMessage) }))

	// Steps 2 and 3: structure and header.
	const gStructure = "Response: structure (steps 1-3)"
	add(p.resp(gStructure, "response-oversized", step(secResponse, 1),
		"A correctly signed response of more than 4096 octets.", protocol.CodeTooLarge,
		func(r *caseRun, ch *liveChallenge) string { return p.padded(r, ch, protocol.MaxHandshakeMessage+200) }))
	add(p.resp(gStructure, "response-empty", step(secResponse, 2), "An empty text message.", protocol.CodeMalformed,
		func(*caseRun, *liveChallenge) string { return "" }))
	add(p.resp(gStructure, "response-two-segments", step(secResponse, 2), "A correct response without its signature segment.", protocol.CodeMalformed,
		func(r *caseRun, ch *liveChallenge) string {
			h, pl, _, _ := splitJWS(p.good(r, ch))
			return h + "." + pl
		}))
	add(p.resp(gStructure, "response-four-segments", step(secResponse, 2), "A correct response with a fourth segment.", protocol.CodeMalformed,
		func(r *caseRun, ch *liveChallenge) string {
			g := p.good(r, ch)
			_, _, s, _ := splitJWS(g)
			return g + "." + s
		}))
	add(p.resp(gStructure, "response-json-flattened", step(secResponse, 2), "A correct response in flattened JWS JSON serialization: compact only.", protocol.CodeMalformed,
		func(r *caseRun, ch *liveChallenge) string {
			h, pl, s, _ := splitJWS(p.good(r, ch))
			return jobj{{"protected", jstr(h)}, {"payload", jstr(pl)}, {"signature", jstr(s)}}.String()
		}))
	add(p.resp(gStructure, "response-json-general", step(secResponse, 2), "A correct response in general JWS JSON serialization.", protocol.CodeMalformed,
		func(r *caseRun, ch *liveChallenge) string {
			h, pl, s, _ := splitJWS(p.good(r, ch))
			sigs := "[" + jobj{{"protected", jstr(h)}, {"signature", jstr(s)}}.String() + "]"
			return jobj{{"payload", jstr(pl)}, {"signatures", sigs}}.String()
		}))
	add(p.resp(gStructure, "response-padded-signature", step(secResponse, 2), "The signature segment carries '=' padding.", protocol.CodeMalformed,
		func(r *caseRun, ch *liveChallenge) string {
			return p.withSig(r, ch, func(si string) (string, error) {
				sig, err := A.sigOver(si)
				s := base64.URLEncoding.EncodeToString(sig)
				if !strings.HasSuffix(s, "=") {
					s += "=="
				}
				return s, err
			})
		}))
	add(p.resp(gStructure, "response-noncanonical-signature", step(secResponse, 2), "The signature's last base64url character has non-zero unused bits.", protocol.CodeMalformed,
		func(r *caseRun, ch *liveChallenge) string {
			return p.withSig(r, ch, func(si string) (string, error) {
				sig, err := A.sigOver(si)
				s := nonCanonicalLast(b64u.Encode(sig))
				if s == "" && err == nil {
					r.skip(fmt.Sprintf("a %s signature has no unused bits in base64url", A.Alg))
				}
				return s, err
			})
		}))
	add(p.resp(gStructure, "response-noncanonical-payload", step(secResponse, 2), "The payload segment has non-zero unused bits; the signature covers that exact text.", protocol.CodeMalformed,
		func(r *caseRun, ch *liveChallenge) string {
			pl := p.claims(ch).String()
			for len(pl)%3 == 0 {
				pl += " "
			}
			return sealed(r, b64u.Encode([]byte(hdr(A).String()))+"."+nonCanonicalLast(b64u.Encode([]byte(pl))), A.sigOver)
		}))
	add(p.resp(gStructure, "response-line-break", step(secResponse, 2), "A line break inside the header segment (base64 decoders often skip it).", protocol.CodeMalformed,
		func(r *caseRun, ch *liveChallenge) string {
			g := p.good(r, ch)
			return g[:4] + "\n" + g[4:]
		}))
	add(p.headerCase(gStructure, "response-header-not-object", step(secResponse, 2), "The header is a JSON array.", protocol.CodeMalformed,
		func(*liveChallenge) string { return `["` + string(A.Alg) + `"]` }))
	add(p.headerCase(gStructure, "response-header-bom", step(secResponse, 2), "The header starts with a UTF-8 byte order mark.", protocol.CodeMalformed,
		func(*liveChallenge) string { return "\ufeff" + hdr(A).String() }))
	add(p.headerCase(gStructure, "response-header-invalid-utf8", step(secResponse, 2), "The header's kid holds a byte that is not UTF-8.", protocol.CodeMalformed,
		func(*liveChallenge) string {
			return `{"alg":` + jstr(string(A.Alg)) + `,"kid":"` + A.ID + "\xff" + `","typ":` + jstr(typ) + `}`
		}))
	add(p.headerCase(gStructure, "response-duplicate-header-member", step(secResponse, 2), "The header names alg twice.", protocol.CodeMalformed,
		func(*liveChallenge) string { return append(jobj{{"alg", jstr(string(A.Alg))}}, hdr(A)...).String() }))
	add(p.headerCase(gStructure, "response-case-variant-header-member", step(secResponse, 2), `The header has both "alg" and "ALG": a JSON rule, before the header allow-list.`, protocol.CodeMalformed,
		func(*liveChallenge) string { return hdr(A).add("ALG", jstr(string(A.Alg))).String() }))
	for _, m := range []struct{ id, name, value, why string }{
		{"jwk", "jwk", "", "An embedded jwk header naming the signing key: keys come from the registry only."},
		{"jku", "jku", jstr("https://wsproof-probe.invalid/jwks.json"), "A jku header pointing at an attacker's key set."},
		{"x5u", "x5u", jstr("https://wsproof-probe.invalid/cert.pem"), "An x5u header."},
		{"x5c", "x5c", `["MIIBszCCAVmgAwIBAgIUEXAMPLE"]`, "An x5c header."},
		{"x5t-s256", "x5t#S256", jstr(randB64(32)), "An x5t#S256 header."},
		{"crit", "crit", `["exp"]`, "A crit header, even naming a registered member."},
		{"zip", "zip", jstr("DEF"), "A zip header."},
		{"b64-false", "b64", "false", "An RFC 7797 b64 header."},
		{"cty", "cty", jstr("JWT"), "A cty header in a JWS."},
		{"nonce", "nonce", "", "The challenge's nonce as a header member."},
		{"epk", "epk", `{"kty":"OKP","crv":"X25519","x":"` + randB64(32) + `"}`, "An epk header."},
	} {
		add(p.headerCase(gStructure, "response-header-"+m.id, step(secResponse, 3), m.why, protocol.CodeHeaderNotAllowed,
			func(ch *liveChallenge) string {
				v := m.value
				switch m.name {
				case "jwk":
					j, _ := keys.MarshalJWK(A.Signer.Public(), A.ID, A.Alg)
					v = string(bytes.TrimSpace(j))
				case "nonce":
					v = jstr(ch.c.Nonce)
				}
				return header(string(A.Alg), A.ID, typ, member{m.name, v}).String()
			}))
	}
	add(p.headerCase(gStructure, "response-missing-typ", step(secResponse, 3), "No typ header.", protocol.CodeMalformed,
		func(*liveChallenge) string { return hdr(A).del("typ").String() }))
	add(p.headerCase(gStructure, "response-missing-kid", step(secResponse, 3), "No kid header.", protocol.CodeMalformed,
		func(*liveChallenge) string { return hdr(A).del("kid").String() }))
	add(p.headerCase(gStructure, "response-missing-alg", step(secResponse, 3), "No alg header.", protocol.CodeMalformed,
		func(*liveChallenge) string { return hdr(A).del("alg").String() }))
	add(p.headerCase(gStructure, "response-kid-not-string", step(secResponse, 3), "kid is a number.", protocol.CodeMalformed,
		func(*liveChallenge) string { return hdr(A).set("kid", "1").String() }))
	add(p.headerCase(gStructure, "response-alg-not-string", step(secResponse, 3), "alg is an array.", protocol.CodeMalformed,
		func(*liveChallenge) string { return hdr(A).set("alg", `["`+string(A.Alg)+`"]`).String() }))

	// Step 4: explicit typing.
	const gType = "Response: type (step 4)"
	for _, t := range []struct{ id, typ, why string }{
		{"response-wrong-typ", "JWT", `"typ":"JWT" instead of wsproof-response+jwt.`},
		{"response-typ-case-variant", "Wsproof-Response+JWT", "typ values are compared byte for byte."},
		{"response-typ-media-type", "application/wsproof-response+jwt", "The application/ prefix RFC 7515 would tolerate is not accepted."},
		{"response-typ-session", protocol.TypSession, "A response typed as a session token (cross-JWT confusion)."},
		{"response-typ-challenge", protocol.TypChallenge, "A response typed as a challenge."},
	} {
		add(p.headerCase(gType, t.id, step(secResponse, 4), t.why, protocol.CodeWrongType,
			func(*liveChallenge) string { return header(string(A.Alg), A.ID, t.typ).String() }))
	}
	add(p.resp(gType, "response-challenge-reflected", step(secResponse, 4), "The server's own challenge sent back as the response.", protocol.CodeWrongType,
		func(_ *caseRun, ch *liveChallenge) string { return ch.raw }))

	// Steps 5 and 14: algorithms.
	const gAlg = "Response: algorithms (steps 5, 14)"
	// under is the signing input of a correct response by A under header alg.
	under := func(alg string, ch *liveChallenge) string {
		return signingInput(header(alg, A.ID, typ).String(), p.claims(ch).String())
	}
	unsigned := func(alg string) build {
		return func(_ *caseRun, ch *liveChallenge) string { return under(alg, ch) + "." }
	}
	misnamed := func(alg string) build {
		return func(r *caseRun, ch *liveChallenge) string { return sealed(r, under(alg, ch), A.sigOver) }
	}
	add(p.resp(gAlg, "response-alg-none", step(secResponse, 5), `"alg":"none" with an empty signature.`, protocol.CodeAlgNotAllowed, unsigned("none")))
	add(p.resp(gAlg, "response-alg-none-capitalized", step(secResponse, 5), `"alg":"None": algorithm names are case-sensitive.`, protocol.CodeAlgNotAllowed, unsigned("None")))
	add(p.resp(gAlg, "response-alg-lowercase", step(secResponse, 5), "The key's algorithm name in lower case, over a correct signature.", protocol.CodeAlgNotAllowed,
		misnamed(strings.ToLower(string(A.Alg)))))
	add(p.resp(gAlg, "response-alg-rs512", step(secResponse, 5), "RS512 is a JOSE algorithm but not a wsproof one.", protocol.CodeAlgNotAllowed, misnamed("RS512")))
	add(p.resp(gAlg, "response-hs256-public-key", step(secResponse, 5), "HS256 keyed with the PEM of the client's registered public key (RFC 8725 section 2.1).", protocol.CodeAlgNotAllowed,
		func(r *caseRun, ch *liveChallenge) string {
			si := under("HS256", ch)
			mac, err := hs256(A.Signer.Public(), si)
			if err != nil {
				r.fail("the probe cannot MAC: " + err.Error())
			}
			return si + "." + b64u.Encode(mac)
		}))
	add(p.resp(gAlg, "response-alg-not-offered", step(secResponse, 5), "An algorithm of the closed list that the challenge's algs does not offer.", protocol.CodeAlgNotAllowed,
		func(r *caseRun, ch *liveChallenge) string {
			for _, a := range keys.Algorithms {
				if !slices.Contains(ch.c.Algs, string(a)) {
					si := under(string(a), ch)
					sig, err := A.signAs(a, si)
					if err != nil {
						sig, _ = A.sigOver(si)
					}
					return si + "." + b64u.Encode(sig)
				}
			}
			r.skip("the server offers all six algorithms")
			return ""
		}))
	add(p.headerCase(gAlg, "response-empty-kid", step(secResponse, 5), `An empty kid, checked after alg.`, protocol.CodeMalformed,
		func(*liveChallenge) string { return header(string(A.Alg), "", typ).String() }))
	add(probeCase{id: "response-sibling-alg", group: gAlg, section: step(secResponse, 14),
		title:  "A correct signature by the accepted key under another algorithm its key type allows (RS256/PS256, ES256/ES384): one key, one algorithm.",
		expect: expClose(protocol.CodeAlgMismatch) + ", or " + expClose(protocol.CodeAlgNotAllowed) + " when that algorithm is not offered",
		run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
			sib := sibling(A.Alg, ch.c.Algs)
			code := protocol.CodeAlgMismatch
			if !slices.Contains(ch.c.Algs, string(sib)) {
				code = protocol.CodeAlgNotAllowed
			}
			r.res.Expected = expClose(code)
			r.note("%s signature by the %s key", sib, A.Alg)
			msg := sealed(r, under(string(sib), ch), func(si string) ([]byte, error) { return A.signAs(sib, si) })
			if r.verdict {
				return
			}
			w.sendText(msg)
			p.observe(r, w, code)
		})})

	// Step 6: claims.
	const gClaims = "Response: claims (step 6)"
	otherNonce := jstr(randB64(32))
	for _, c := range []struct {
		id, why string
		edit    func(o jobj, ch *liveChallenge) string
	}{
		{"response-duplicate-claim", "The payload names nonce twice, with different values.", func(o jobj, _ *liveChallenge) string { return o.add("nonce", otherNonce).String() }},
		{"response-case-variant-claim", `The payload has both "nonce" and "Nonce".`, func(o jobj, _ *liveChallenge) string { return o.add("Nonce", otherNonce).String() }},
		{"response-trailing-data", "The payload has bytes after the JSON object.", func(o jobj, _ *liveChallenge) string { return o.String() + " []" }},
		{"response-payload-array", "The payload is a JSON array.", func(jobj, *liveChallenge) string { return "[]" }},
		{"response-missing-cha", "No cha claim.", func(o jobj, _ *liveChallenge) string { return o.del("cha").String() }},
		{"response-missing-aud", "No aud claim.", func(o jobj, _ *liveChallenge) string { return o.del("aud").String() }},
		{"response-aud-too-long", "aud is the server identity padded to 257 octets; aud is 1 to 256 octets.", func(o jobj, ch *liveChallenge) string {
			return o.set("aud", jstr(ch.c.Iss+strings.Repeat("/", 257-len(ch.c.Iss)))).String()
		}},
		{"response-aud-empty", "aud is the empty string; aud is 1 to 256 octets.", func(o jobj, _ *liveChallenge) string { return o.set("aud", `""`).String() }},
		{"response-nonce-not-string", "nonce is a number.", func(o jobj, _ *liveChallenge) string { return o.set("nonce", "42").String() }},
		{"response-cha-short", "cha is 16 octets, not 32.", func(o jobj, _ *liveChallenge) string { return o.set("cha", jstr(randB64(16))).String() }},
		{"response-sid-short", "sid is 8 octets; 16 to 32 are allowed.", func(o jobj, _ *liveChallenge) string { return o.set("sid", jstr(randB64(8))).String() }},
		{"response-cb-wrong-length", "cb is present but 16 octets.", func(o jobj, _ *liveChallenge) string { return o.set("cb", jstr(randB64(16))).String() }},
		{"response-noncanonical-claim", "nonce is in non-canonical base64url (a set unused bit).", func(o jobj, ch *liveChallenge) string {
			return o.set("nonce", jstr(nonCanonicalLast(ch.c.Nonce))).String()
		}},
	} {
		add(p.claimsCase(gClaims, c.id, step(secResponse, 6), c.why, protocol.CodeMalformed, c.edit))
	}

	// Steps 7 to 11: transcript binding and freshness, before any registry
	// access.
	const gBinding = "Response: transcript and freshness (steps 7-11)"
	add(p.claimsCase(gBinding, "response-to-other-challenge", step(secResponse, 7),
		"cha is the hash of another challenge (sid, nonce and aud are right).", protocol.CodeTranscriptMismatch,
		func(o jobj, ch *liveChallenge) string { return o.set("cha", jstr(sha256b64(ch.raw+" "))).String() }))
	add(p.claimsCase(gBinding, "response-wrong-socket", step(secResponse, 8), "A signed response for another socketID.", protocol.CodeSocketMismatch,
		func(o jobj, _ *liveChallenge) string { return o.set("sid", jstr(randB64(16))).String() }))
	add(p.claimsCase(gBinding, "response-wrong-nonce", step(secResponse, 9), "A signed response carrying another nonce.", protocol.CodeNonceMismatch,
		func(o jobj, _ *liveChallenge) string { return o.set("nonce", otherNonce).String() }))
	add(p.claimsCase(gBinding, "response-wrong-audience", step(secResponse, 10), "A signed response addressed to another server.", protocol.CodeAudienceMismatch,
		func(o jobj, _ *liveChallenge) string {
			return o.set("aud", jstr("wss://wsproof-probe.invalid/ws")).String()
		}))
	add(probeCase{id: "response-challenge-expired", group: gBinding, section: step(secResponse, 11), slow: true,
		title:  "A correct response sent just after the challenge's exp, when the challenge outlives no handshake deadline.",
		expect: expClose(protocol.CodeChallengeExpired),
		run: p.onSocket(func(ctx context.Context, r *caseRun, w *wire, ch *liveChallenge) {
			exp := time.Unix(ch.c.Exp, 0).Add(300 * time.Millisecond)
			if time.Until(exp) > p.hsTimeout-500*time.Millisecond {
				r.skip(fmt.Sprintf("the challenge lives %d s, longer than the handshake deadline (%s): the server closes with handshake_timeout first", ch.c.Exp-ch.c.Iat, p.hsTimeout))
				return
			}
			msg := p.good(r, ch)
			if sleepCtx(ctx, time.Until(exp)) != nil {
				r.skip("interrupted")
				return
			}
			w.sendText(msg)
			p.observe(r, w, protocol.CodeChallengeExpired)
		})})

	// Steps 12 to 17: the registry entry and the signature.
	const gKeys = "Response: key and signature (steps 12-17)"
	add(p.resp(gKeys, "response-unknown-key", step(secResponse, 12), "A correct response by a key that is not in the registry.", protocol.CodeUnknownKey,
		func(r *caseRun, ch *liveChallenge) string {
			k, err := p.unknownKey()
			if err != nil {
				r.fail("the probe cannot make a key: " + err.Error())
				return ""
			}
			return signed(r, k, hdr(k).String(), p.claims(ch).String())
		}))
	add(p.resp(gKeys, "response-signed-by-other-registered-key", step(secResponse, 15),
		"kid names the accepted key but the signature is by the denied key, another registered key.", protocol.CodeBadSignature,
		func(r *caseRun, ch *liveChallenge) string {
			if p.denied == nil {
				r.skip("needs a registered key outside the required groups (ServerTarget.Denied; probe: --denied-key)")
				return ""
			}
			return sealed(r, signingInput(hdr(A).String(), p.claims(ch).String()), func(si string) ([]byte, error) {
				if sig, err := p.denied.signAs(A.Alg, si); err == nil {
					return sig, nil
				}
				return p.denied.sigOver(si)
			})
		}))
	add(p.resp(gKeys, "response-der-signature", step(secResponse, 15), "A correct ECDSA signature in ASN.1 DER instead of raw r||s.", protocol.CodeBadSignature,
		func(r *caseRun, ch *liveChallenge) string {
			if !strings.HasPrefix(string(A.Alg), "ES") {
				r.skip("needs an ECDSA key")
				return ""
			}
			return p.withSig(r, ch, func(si string) (string, error) {
				der, err := A.derSig(si)
				return b64u.Encode(der), err
			})
		}))
	sigEdit := func(id, why string, edit func([]byte) []byte) probeCase {
		return p.resp(gKeys, id, step(secResponse, 15), why, protocol.CodeBadSignature, func(r *caseRun, ch *liveChallenge) string {
			return p.withSig(r, ch, func(si string) (string, error) {
				sig, err := A.sigOver(si)
				return b64u.Encode(edit(sig)), err
			})
		})
	}
	add(sigEdit("response-signature-short", "A correct signature without its last octet.", func(s []byte) []byte { return s[:len(s)-1] }))
	add(sigEdit("response-signature-long", "A correct signature with one zero octet appended.", func(s []byte) []byte { return append(s, 0) }))
	add(sigEdit("response-signature-empty", "An empty signature under a valid algorithm.", func([]byte) []byte { return nil }))
	add(sigEdit("response-signature-flipped", "A correct signature with one bit flipped.", func(s []byte) []byte { s[10] ^= 1; return s }))
	for _, salt := range []int{0, 64} {
		add(p.resp(gKeys, fmt.Sprintf("response-ps256-salt-%d", salt), step(secResponse, 15),
			fmt.Sprintf("A PSS signature with a %d-octet salt: PS256 requires exactly 32.", salt), protocol.CodeBadSignature,
			func(r *caseRun, ch *liveChallenge) string {
				if A.Alg != keys.PS256 {
					r.skip("needs a PS256 key")
					return ""
				}
				return p.withSig(r, ch, func(si string) (string, error) {
					sig, err := A.pssWithSalt(si, salt)
					return b64u.Encode(sig), err
				})
			}))
	}

	// Step 18: channel binding.
	const gCB = "Response: channel binding (step 18)"
	cbCase := func(id, why string, need func(*liveChallenge) string, edit func(o jobj) jobj) probeCase {
		return p.resp(gCB, id, step(secResponse, 18), why, protocol.CodeChannelBindingMismatch, func(r *caseRun, ch *liveChallenge) string {
			if reason := need(ch); reason != "" {
				r.skip(reason)
				return ""
			}
			return signed(r, A, hdr(A).String(), edit(p.claims(ch)).String())
		})
	}
	add(cbCase("response-cb-unexpected", `cb is present though the challenge said "none".`, func(ch *liveChallenge) string {
		if ch.c.CB != protocol.BindingNone {
			return "the server demands tls-exporter binding"
		}
		return ""
	}, func(o jobj) jobj { return o.set("cb", jstr(randB64(32))) }))
	add(cbCase("response-cb-missing", "The challenge demands tls-exporter binding and the response has no cb.", needsExporter,
		func(o jobj) jobj { return o.del("cb") }))
	add(cbCase("response-cb-wrong", "cb is another TLS connection's exporter value (a relay).", needsExporter,
		func(o jobj) jobj { return o.set("cb", jstr(randB64(32))) }))

	// Step 19: authorization.
	const gAuthz = "Authorization (step 19)"
	add(p.resp(gAuthz, "response-denied-key", step(secResponse, 19), "A correct response by a registered key in none of the required groups.", protocol.CodeAccessDenied,
		func(r *caseRun, ch *liveChallenge) string {
			if p.denied == nil {
				r.skip("needs a registered key outside the required groups (ServerTarget.Denied; probe: --denied-key)")
				return ""
			}
			return signed(r, p.denied, hdr(p.denied).String(), p.claims(ch).String())
		}))
	add(p.resp(gAuthz, "response-denied-key-claims-groups", step(secResponse, 19), "The denied key claims groups in its response: claims cannot grant groups.", protocol.CodeAccessDenied,
		func(r *caseRun, ch *liveChallenge) string {
			if p.denied == nil {
				r.skip("needs a registered key outside the required groups (ServerTarget.Denied; probe: --denied-key)")
				return ""
			}
			cl := p.claims(ch).set("groups", `["admin","admins","devices","users","root","wsproof"]`)
			return signed(r, p.denied, hdr(p.denied).String(), cl.String())
		}))

	// The server state machine.
	const gState = "Server state machine"
	add(probeCase{id: "binary-before-response", group: gState, section: secServerSM,
		title:  "A correct response sent as a binary message: control messages are text, and binary before the accept is refused.",
		expect: expClose(protocol.CodeUnexpectedMessage),
		run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
			msg := p.good(r, ch)
			if r.verdict {
				return
			}
			w.send(opBinary, []byte(msg))
			p.observe(r, w, protocol.CodeUnexpectedMessage)
		})})
	add(probeCase{id: "binary-oversized-before-response", group: gState, section: secFraming,
		title:  "A 4097-octet binary message before the accept: the size limit applies before the message type.",
		expect: expClose(protocol.CodeTooLarge),
		run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, _ *liveChallenge) {
			w.send(opBinary, bytes.Repeat([]byte{'w'}, protocol.MaxHandshakeMessage+1))
			p.observe(r, w, protocol.CodeTooLarge)
		})})
	add(probeCase{id: "response-replayed-same-socket", group: gState, section: secServerSM,
		title:  "The accepted response sent again on its socket: a text message in OPEN.",
		expect: expClose(protocol.CodeUnexpectedMessage),
		run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
			msg := p.good(r, ch)
			w.sendText(msg)
			if ev := w.next(time.Now().Add(p.wait())); ev.kind != evMessage {
				r.fail("no accept: " + describe(ev, p.wait()))
				return
			}
			w.sendText(msg)
			p.observe(r, w, protocol.CodeUnexpectedMessage)
		})})

	// Replay across sockets.
	const gReplay = "Replay"
	add(probeCase{id: "response-raced-two-sockets", group: gReplay, section: secReplay,
		title:  "One response sent at once on its own socket and on another: the first is accepted, the second refused (transcript_mismatch).",
		expect: "socket 1: accept; socket 2: " + expClose(protocol.CodeTranscriptMismatch),
		run: func(ctx context.Context, r *caseRun) {
			w1, ch1, ok := p.open(ctx, r, dialOptions{})
			if !ok {
				return
			}
			defer w1.Close()
			w2, _, ok := p.open(ctx, r, dialOptions{})
			if !ok {
				return
			}
			defer w2.Close()
			msg := p.good(r, ch1)
			var wg sync.WaitGroup
			evs := make([]event, 2)
			for i, w := range []*wire{w1, w2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w.sendText(msg)
					evs[i] = w.next(time.Now().Add(p.wait()))
				}()
			}
			wg.Wait()
			_, accepted := parseAccept(evs[0].data)
			code := protocol.CodeTranscriptMismatch
			refused := r.closeIs(evs[1], code)
			p.judge(r, w2, accepted && refused, fmt.Sprintf("socket 1: %s; socket 2: %s", describe(evs[0], p.wait()), describe(evs[1], p.wait())))
		}})
	add(probeCase{id: "token-replayed-as-response", group: gReplay, section: step(secResponse, 2),
		title:  "The session token of an authenticated socket sent as the response on another socket (a compact JWE, five segments).",
		expect: expClose(protocol.CodeMalformed),
		run: func(ctx context.Context, r *caseRun) {
			w1, ch1, ok := p.open(ctx, r, dialOptions{})
			if !ok {
				return
			}
			defer w1.Close()
			sess, ok := p.authenticate(r, w1, ch1)
			if !ok {
				return
			}
			w2, _, ok := p.open(ctx, r, dialOptions{})
			if !ok {
				return
			}
			defer w2.Close()
			w2.sendText(sess.Token)
			p.observe(r, w2, protocol.CodeMalformed)
		}})

	cs = append(cs, p.openingCases()...)
	cs = append(cs, p.framingCases()...)
	cs = append(cs, p.limitCases()...)
	cs = append(cs, p.sessionCases()...)
	cs = append(cs, p.refreshCases()...)
	cs = append(cs, p.keepaliveCases()...)
	for i := range cs {
		if cs[i].rows == nil {
			cs[i].rows = serverCaseRows[cs[i].id]
		}
	}
	return cs
}

// serverCaseRows are the rows of spec section "Server state machine" that
// the cases defined without them drive. Cases of RFC 6455 framing and of
// the HTTP server drive none.
var serverCaseRows = map[string][]string{
	"handshake-valid":                  {"S4", "S6", "S16"},
	"challenge-fresh-per-socket":       {"S4", "S6"},
	"response-extra-claims-ignored":    {"S16"},
	"response-fragmented":              {"S16", "S21"},
	"response-sibling-alg":             {"S16"},
	"response-challenge-expired":       {"S16"},
	"binary-before-response":           {"S15"},
	"binary-oversized-before-response": {"S14"},
	"response-replayed-same-socket":    {"S16", "S19"},
	"response-raced-two-sockets":       {"S16"},
	"token-replayed-as-response":       {"S16"},
	"origin-hostile":                   {"S2"},
	"origin-null":                      {"S2"},
	"origin-case-variant":              {"S2"},
	"origin-allowed":                   {"S4", "S6"},
	"subprotocol-missing":              {"S3"},
	"subprotocol-other":                {"S3"},
	"compression-offered":              {"S4", "S6"},
	"no-auth-from-url-or-cookie":       {"S4", "S15"},
	"frame-huge-length":                {"S14"},
	"fragments-endless":                {"S14"},
	"fragments-tiny":                   {"S14"},
	"silent-socket":                    {"S7"},
	"ping-flood":                       {"S7"},
	"response-dripped":                 {"S7"},
}

// serverRowsNotDriven are the rows of spec section "Server state machine"
// that no case of probe server drives, and why.
var serverRowsNotDriven = []RowGap{
	{[]string{"S1"}, "the probe paces its connections under the server's rate limits (--rate) and retries a 429; provoking one takes load the probe does not send"},
	{[]string{"S5"}, "a limit reached between the upgrade and the signature is a race inside the server"},
	{[]string{"S8"}, "a final token needs a registry entry whose exp is near; the probe does not edit the registry"},
	{[]string{"S22", "S23", "S24", "S25", "S26"}, "registry changes are not under the probe's control"},
	{[]string{"S27", "S28", "S29", "S30"}, "what the server's application sends, and when it ends a session, is the application's behaviour"},
	{[]string{"S31"}, "a shutdown is the operator's decision"},
	{[]string{"S32"}, "needs a failure inside the server"},
	{[]string{"S35"}, "after the server's Close frame the probe replies and the connection ends: a CLOSED socket has nothing left to show"},
}

func needsExporter(ch *liveChallenge) string {
	switch {
	case ch.c.CB != protocol.BindingTLSExporter:
		return `the server does not demand tls-exporter binding (it said "none")`
	case ch.exporter == nil:
		return "the probe's connection has no TLS 1.3 exporter value"
	}
	return ""
}

// authenticate answers ch as a conforming client with the accepted key and
// reads the accept.
func (p *serverProbe) authenticate(r *caseRun, w *wire, ch *liveChallenge) (*protocol.ClientSession, bool) {
	ls, ok := p.login(r, w, ch)
	if !ok {
		return nil, false
	}
	return ls.sess, true
}

// liveSession is an authenticated socket, as a conforming client holds it.
type liveSession struct {
	w    *wire
	sess *protocol.ClientSession
	sent time.Time // when the response went out: the last thing the server heard
	at   time.Time // when the accept arrived
}

// lifetime is the token lifetime the accept shows: its exp, in whole
// seconds, less the time it arrived.
func (ls *liveSession) lifetime() time.Duration { return ls.sess.Expiry.Sub(ls.at) }

// login is authenticate, keeping the times.
func (p *serverProbe) login(r *caseRun, w *wire, ch *liveChallenge) (*liveSession, bool) {
	h := p.pc.Handshake()
	resp, err := h.ReadChallenge([]byte(ch.raw), rand.Reader, time.Now(), w.exporter)
	if err != nil {
		r.fail(fmt.Sprintf("the challenge does not verify for a conforming client (%s)", protocol.CodeOf(err)))
		r.note("%s", oneLine(err.Error()))
		return nil, false
	}
	sent := time.Now()
	if err := w.send(opText, resp); err != nil {
		r.fail("cannot send the response: " + err.Error())
		return nil, false
	}
	ev := w.next(time.Now().Add(p.wait()))
	if ev.kind != evMessage || ev.op != opText {
		r.fail("no accept for a valid response: " + describe(ev, p.wait()))
		return nil, false
	}
	sess, err := h.ReadAccept(ev.data, time.Now())
	if err != nil {
		r.fail(fmt.Sprintf("the accept is refused by a conforming client (%s)", protocol.CodeOf(err)))
		r.note("%s", oneLine(err.Error()))
		return nil, false
	}
	return &liveSession{w: w, sess: sess, sent: sent, at: ev.at}, true
}

// padded is a correct response by the accepted key padded with an ignored
// claim to size octets, or one less when base64url lengths skip size.
func (p *serverProbe) padded(r *caseRun, ch *liveChallenge, size int) string {
	h := b64u.Encode([]byte(hdr(p.key).String()))
	probe := signed(r, p.key, hdr(p.key).String(), p.claims(ch).String())
	if r.verdict {
		return ""
	}
	_, _, sig, _ := splitJWS(probe)
	base := p.claims(ch).set("pad", `""`).String()
	room := size - len(h) - len(sig) - 2 // for the payload segment
	n := max(room*3/4-len(base), 0)
	for n > 0 && len(b64u.Encode(make([]byte, len(base)+n))) > room {
		n--
	}
	cl := p.claims(ch).set("pad", jstr(strings.Repeat("w", n)))
	msg := signed(r, p.key, hdr(p.key).String(), cl.String())
	r.note("%d octets", len(msg))
	return msg
}

// openingCases test the HTTP upgrade (spec section "Transport: Opening
// handshake").
func (p *serverProbe) openingCases() []probeCase {
	const g = "Opening handshake"
	status := func(id, title string, code protocol.Code, o dialOptions) probeCase {
		return probeCase{id: id, group: g, section: secOpening, title: title, expect: expHTTP(code),
			run: func(ctx context.Context, r *caseRun) {
				w, _, err := p.dial(ctx, r, o)
				var ue *upgradeError
				switch {
				case err == nil:
					w.Close()
					r.fail("101 Switching Protocols")
				case errors.As(err, &ue):
					r.judge(ue.status == code.HTTPStatus(), fmt.Sprintf("HTTP %d", ue.status))
					if ue.body != "" {
						r.note("body %q", cell(strings.TrimSpace(ue.body), 80))
					}
				default:
					r.fail(describeDialErr(err))
				}
			}}
	}
	cs := []probeCase{
		status("origin-hostile", "An Origin that no allow-list holds (cross-site WebSocket hijacking).", protocol.CodeOriginNotAllowed,
			dialOptions{origin: "https://wsproof-probe.invalid"}),
		status("origin-null", `Origin "null", as sandboxed frames and file: pages send it.`, protocol.CodeOriginNotAllowed,
			dialOptions{origin: "null"}),
		status("subprotocol-missing", "An upgrade that offers no subprotocol.", protocol.CodeSubprotocolRequired,
			dialOptions{protocols: []string{}}),
		status("subprotocol-other", "An upgrade that offers other subprotocols only.", protocol.CodeSubprotocolRequired,
			dialOptions{protocols: []string{"wsproof.v2", "chat"}}),
		{id: "compression-offered", group: g, section: secOpening,
			title:  "The client offers permessage-deflate, as browsers do: the server must not accept it.",
			expect: "101 without Sec-WebSocket-Extensions, then a challenge",
			run: func(ctx context.Context, r *caseRun) {
				w, resp, err := p.dial(ctx, r, dialOptions{extensions: "permessage-deflate; client_max_window_bits"})
				if err != nil {
					r.fail(describeDialErr(err))
					return
				}
				defer w.Close()
				if ext := resp.Header.Values("Sec-WebSocket-Extensions"); len(ext) > 0 {
					r.fail(fmt.Sprintf("extension accepted: %q", strings.Join(ext, ", ")))
					return
				}
				if _, ok := p.readChallenge(r, w); ok {
					p.judge(r, w, true, "101 without extensions, then a challenge")
				}
			}},
		{id: "no-auth-from-url-or-cookie", group: g, section: secOpening,
			title:  "Credential-looking query parameters, a Cookie and an Authorization header: the socket is still unauthenticated.",
			expect: "a challenge, then " + expClose(protocol.CodeUnexpectedMessage) + " for a binary message",
			run: func(ctx context.Context, r *caseRun) {
				o := dialOptions{query: "token=wsproof-probe&access_token=wsproof-probe",
					header: http.Header{"Cookie": {"token=wsproof-probe; session=wsproof-probe"}, "Authorization": {"Bearer wsproof-probe"}}}
				w, _, ok := p.open(ctx, r, o)
				if !ok {
					return
				}
				defer w.Close()
				w.send(opBinary, []byte("application data before authentication"))
				p.observe(r, w, protocol.CodeUnexpectedMessage)
			}},
	}
	// The allowed Origin: only the deployment knows one.
	noOrigin := "needs an Origin the server allows (ServerTarget.Origin; probe: --origin)"
	cs = append(cs, probeCase{id: "origin-allowed", group: g, section: secOpening,
		title:  "An Origin the server allows (ServerTarget.Origin).",
		expect: "101, then a challenge",
		run: func(ctx context.Context, r *caseRun) {
			if p.origin == "" {
				r.skip(noOrigin)
				return
			}
			w, _, ok := p.open(ctx, r, dialOptions{origin: p.origin})
			if ok {
				w.Close()
				r.pass("101, then a challenge")
			}
		}})
	variant := status("origin-case-variant",
		"The allowed Origin with its letters' case changed: the spec compares the ASCII serialization exactly.",
		protocol.CodeOriginNotAllowed, dialOptions{})
	variant.run = func(ctx context.Context, r *caseRun) {
		v := caseVariant(p.origin)
		switch {
		case p.origin == "":
			r.skip(noOrigin)
		case v == p.origin:
			r.skip(fmt.Sprintf("the Origin %q has no letters whose case can change", p.origin))
		default:
			status("", "", protocol.CodeOriginNotAllowed, dialOptions{origin: v}).run(ctx, r)
		}
	}
	cs = append(cs, variant)
	return cs
}

// caseVariant changes the case of the host part of an origin: a string no
// browser sends, since RFC 6454 serializes scheme and host in lower case.
func caseVariant(origin string) string {
	scheme, rest, ok := strings.Cut(origin, "://")
	if !ok {
		return strings.ToUpper(origin)
	}
	return scheme + "://" + strings.ToUpper(rest)
}

// framingCases break RFC 6455 framing before authentication, most of them
// around an otherwise correct response, so that a server that ignores the
// violation is caught accepting it. RFC 6455 requires the server to fail
// the WebSocket connection: close with 1002 (or 1007 for invalid UTF-8), or
// just drop it. wsproof codes do not apply, since the frames never make a
// wsproof message.
func (p *serverProbe) framingCases() []probeCase {
	const g = "Framing (RFC 6455)"
	failConn := fmt.Sprintf("close %d (protocol error), or the connection dropped", 1002)
	frameCase := func(id, section, title string, send func(w *wire, good []byte) error) probeCase {
		return probeCase{id: id, group: g, section: section, title: title, expect: failConn,
			run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
				good := []byte(p.good(r, ch))
				if r.verdict {
					return
				}
				send(w, good)
				p.failConnection(r, w, "", 1002)
			})}
	}
	data := func(f frame) func(*wire, []byte) error {
		return func(w *wire, good []byte) error {
			if f.payload == nil {
				f.payload = good
			}
			f.length = -1
			return w.write(f)
		}
	}
	return []probeCase{
		frameCase("frame-unmasked", "RFC 6455 section 5.1", "A correct response in an unmasked frame: a server must close the connection.",
			data(frame{fin: true, op: opText})),
		frameCase("frame-rsv1", "RFC 6455 section 5.2", "A correct response with RSV1 set (compressed) though no extension was negotiated.",
			data(frame{fin: true, rsv: 4, op: opText, masked: true})),
		frameCase("frame-rsv3", "RFC 6455 section 5.2", "A correct response with RSV3 set.",
			data(frame{fin: true, rsv: 1, op: opText, masked: true})),
		frameCase("frame-reserved-opcode", "RFC 6455 section 5.2", "A correct response under reserved data opcode 0x3.",
			data(frame{fin: true, op: 0x3, masked: true})),
		frameCase("frame-reserved-control-opcode", "RFC 6455 section 5.2", "A frame with reserved control opcode 0xB.",
			data(frame{fin: true, op: 0xB, masked: true, payload: []byte("x")})),
		frameCase("control-frame-too-long", "RFC 6455 section 5.5", "A Ping with a 126-octet payload; control frames carry at most 125.",
			data(frame{fin: true, op: opPing, masked: true, payload: bytes.Repeat([]byte{'p'}, 126)})),
		frameCase("control-frame-fragmented", "RFC 6455 section 5.5", "A Ping frame without FIN: control frames must not be fragmented.",
			data(frame{op: opPing, masked: true, payload: []byte("p")})),
		frameCase("continuation-without-start", "RFC 6455 section 5.4", "A correct response in a continuation frame that continues nothing.",
			data(frame{fin: true, op: opContinuation, masked: true})),
		frameCase("message-inside-fragmented-message", "RFC 6455 section 5.4", "A text frame without FIN, then a correct response as a new text message.",
			func(w *wire, good []byte) error {
				w.write(frame{op: opText, masked: true, payload: []byte("ey"), length: -1})
				return w.write(frame{fin: true, op: opText, masked: true, payload: good, length: -1})
			}),
		frameCase("close-code-reserved", "RFC 6455 section 7.4.1", "A Close frame carrying code 1005, which must never be sent.",
			data(frame{fin: true, op: opClose, masked: true, payload: []byte{0x03, 0xED}})),
		frameCase("frame-length-msb", "RFC 6455 section 5.2", "A 64-bit payload length with its most significant bit set.",
			func(w *wire, good []byte) error {
				b := []byte{0x81, 0x80 | 127}
				b = binary.BigEndian.AppendUint64(b, 1<<63|uint64(len(good)))
				b = append(b, 0, 0, 0, 0) // a zero mask key
				return w.writeRaw(append(b, good...))
			}),
		{id: "text-invalid-utf8", group: g, section: "RFC 6455 section 8.1; " + step(secResponse, 2),
			title:  "A text message that is not UTF-8. RFC 6455 fails the connection (1007); a server whose WebSocket layer passes it on refuses it as a response (malformed).",
			expect: "close 1007 (invalid payload data), or " + expClose(protocol.CodeMalformed) + ", or the connection dropped",
			run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, _ *liveChallenge) {
				w.send(opText, []byte("eyJ\xff\xfe\xfd.e30.AA"))
				p.failConnection(r, w, protocol.CodeMalformed, 1007)
			})},
	}
}

// failConnection judges a framing violation: the server must close with
// one of the RFC 6455 codes, or with the wsproof code alt when it is set,
// or drop the connection, and must not go on.
func (p *serverProbe) failConnection(r *caseRun, w *wire, alt protocol.Code, codes ...int) {
	ev := w.next(time.Now().Add(p.wait()))
	ok := ev.kind == evEOF || ev.kind == evClose && slices.Contains(codes, ev.code) || alt != "" && r.closeIs(ev, alt)
	p.judge(r, w, ok, describe(ev, p.wait()))
}

// limitCases test sizes and deadlines (spec section "Limits") with bounded
// load.
func (p *serverProbe) limitCases() []probeCase {
	const g = "Limits and deadlines"
	tooLarge := protocol.CodeTooLarge
	timeout := protocol.CodeHandshakeTimeout
	within := func(d time.Duration) time.Duration { return d + slack(d) }
	return []probeCase{
		{id: "frame-huge-length", group: g, section: secFraming,
			title:  "A text frame header declaring 2^62 octets, followed by 8 KiB: the server must refuse it after at most 4097 octets.",
			expect: expClose(tooLarge) + ", or the connection dropped without reading the payload",
			run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, _ *liveChallenge) {
				b := []byte{0x81, 0x80 | 127}
				b = binary.BigEndian.AppendUint64(b, 1<<62)
				b = append(b, 0, 0, 0, 0)
				w.writeRaw(append(b, bytes.Repeat([]byte{'w'}, 8192)...))
				start := time.Now()
				ev := w.next(time.Now().Add(p.wait()))
				ok := ev.kind == evEOF || r.closeIs(ev, tooLarge)
				p.judge(r, w, ok, fmt.Sprintf("%s after %s", describe(ev, p.wait()), since(start)))
			})},
		p.flood("fragments-endless", "Continuation frames of 1 KiB without end: the message passes 4096 octets.", 1024, 256),
		p.flood("fragments-tiny", "One-octet continuation frames without end.", 1, 8192),
		{id: "silent-socket", group: g, section: secLimits, slow: true,
			title:  "A socket that reads the challenge and never answers.",
			expect: fmt.Sprintf("%s within %s", expClose(timeout), within(p.hsTimeout)),
			run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
				ok, got := p.expectTimeout(r, w, ch.at)
				p.judge(r, w, ok, got)
			})},
		{id: "ping-flood", group: g, section: secLimits, slow: true,
			title:  "Pings (125 octets, about 500 a second, bounded) instead of a response: the server answers them, the deadline still applies, and it serves the next client.",
			expect: fmt.Sprintf("%s within %s, then a valid handshake on a new socket", expClose(timeout), within(p.hsTimeout)),
			run: p.onSocket(func(ctx context.Context, r *caseRun, w *wire, ch *liveChallenge) {
				done := make(chan struct{})
				var sent atomic.Int64
				go func() {
					payload := bytes.Repeat([]byte{'p'}, 125)
					t := time.NewTicker(2 * time.Millisecond)
					defer t.Stop()
					end := time.After(within(p.hsTimeout) + time.Second)
					for sent.Load() < 20000 {
						select {
						case <-done:
							return
						case <-end:
							return
						case <-t.C:
						}
						if w.write(frame{fin: true, op: opPing, masked: true, payload: payload, length: -1}) != nil {
							return
						}
						sent.Add(1)
					}
				}()
				ok, got := p.expectTimeout(r, w, ch.at)
				close(done)
				w.Close()
				r.note("%d pings sent", sent.Load())
				if v := w.Violations(); len(v) > 0 {
					r.note("the server %s", strings.Join(v, "; "))
					ok = false
				}
				if !ok {
					r.fail(got)
					return
				}
				w2, ch2, ok := p.open(ctx, r, dialOptions{})
				if !ok {
					return
				}
				defer w2.Close()
				if _, ok := p.authenticate(r, w2, ch2); ok {
					r.pass(got + "; then a valid handshake")
				}
			})},
		{id: "response-dripped", group: g, section: secLimits, slow: true,
			title:  "A correct response sent one octet every 100 ms: the deadline covers the whole handshake, not each read.",
			expect: fmt.Sprintf("%s within %s", expClose(timeout), within(p.hsTimeout)),
			run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, ch *liveChallenge) {
				good := []byte(p.good(r, ch))
				if r.verdict {
					return
				}
				done := make(chan struct{})
				go func() {
					w.writeRaw(append(appendFrameHeader(nil, frame{fin: true, op: opText, masked: true, length: int64(len(good))}), 0, 0, 0, 0))
					t := time.NewTicker(100 * time.Millisecond)
					defer t.Stop()
					for _, c := range good[:len(good)-1] { // never the last octet
						select {
						case <-done:
							return
						case <-t.C:
						}
						if w.writeRaw([]byte{c}) != nil {
							return
						}
					}
				}()
				ok, got := p.expectTimeout(r, w, ch.at)
				close(done)
				p.judge(r, w, ok, got)
			})},
		{id: "headers-dripped", group: g, section: secLimits, slow: true,
			title:  "Request headers sent one octet every 100 ms, never ending: the HTTP server must give up (ReadHeaderTimeout).",
			expect: fmt.Sprintf("the connection closed within %s", within(p.hdrTimeout)),
			run: func(ctx context.Context, r *caseRun) {
				if err := p.paceCase(ctx, r); err != nil {
					r.skip("interrupted")
					return
				}
				conn, err := dialTCP(ctx, p.u, p.tlsConf)
				if err != nil {
					r.fail("cannot connect: " + oneLine(err.Error()))
					return
				}
				defer conn.Close()
				start := time.Now()
				closed := make(chan string, 1)
				go func() {
					conn.SetReadDeadline(start.Add(within(p.hdrTimeout) + time.Second))
					var got bytes.Buffer
					buf := make([]byte, 512)
					for {
						n, err := conn.Read(buf)
						if got.Len() < 512 {
							got.Write(buf[:n])
						}
						if err != nil {
							line, _, _ := strings.Cut(got.String(), "\r\n")
							closed <- line
							return
						}
					}
				}()
				path := p.u.EscapedPath()
				if path == "" {
					path = "/"
				}
				req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nX-Wsproof-Probe: ", path, p.u.Host)
				conn.SetWriteDeadline(time.Now().Add(within(p.hdrTimeout) + 2*time.Second))
				conn.Write([]byte(req))
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case line := <-closed:
						d := time.Since(start)
						got := "connection closed after " + d.Round(10*time.Millisecond).String()
						if line != "" {
							got += fmt.Sprintf(" (answer %q)", cell(line, 40))
						}
						r.judge(d <= within(p.hdrTimeout), got)
						return
					case <-t.C:
						if time.Since(start) > within(p.hdrTimeout)+time.Second {
							r.fail(fmt.Sprintf("still open after %s", time.Since(start).Round(100*time.Millisecond)))
							return
						}
						conn.Write([]byte("a"))
					}
				}
			}},
	}
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// expectTimeout waits for handshake_timeout within the deadline (and its
// slack), measured from the challenge's arrival.
func (p *serverProbe) expectTimeout(r *caseRun, w *wire, from time.Time) (ok bool, got string) {
	code := protocol.CodeHandshakeTimeout
	limit := p.hsTimeout + slack(p.hsTimeout)
	ev := w.next(from.Add(limit + time.Second))
	d := ev.at.Sub(from)
	ok = r.closeIs(ev, code) && d <= limit
	got = describe(ev, limit+time.Second)
	if ev.kind != evTimeout {
		got += " after " + d.Round(10*time.Millisecond).String()
	}
	return ok, got
}

// flood sends a text message in fragments of size octets, at most count of
// them, and expects too_large once the message passes the limit.
func (p *serverProbe) flood(id, title string, size, count int) probeCase {
	code := protocol.CodeTooLarge
	return probeCase{id: id, group: "Limits and deadlines", section: secFraming, title: title, expect: expClose(code),
		run: p.onSocket(func(_ context.Context, r *caseRun, w *wire, _ *liveChallenge) {
			done := make(chan struct{})
			sentc := make(chan int, 1)
			go func() {
				sent := 0
				chunk := bytes.Repeat([]byte{'e'}, size)
				var batch []byte
				for i := 0; i < count; i++ {
					op := byte(opContinuation)
					if i == 0 {
						op = opText
					}
					batch = append(batch, appendFrameHeader(nil, frame{op: op, masked: true, length: int64(size)})...)
					batch = append(batch, 0, 0, 0, 0)
					batch = append(batch, chunk...)
					if len(batch) >= 4096 || i == count-1 {
						select {
						case <-done:
							sentc <- sent
							return
						default:
						}
						if w.writeRaw(batch) != nil {
							break
						}
						sent += len(batch)
						batch = batch[:0]
					}
				}
				sentc <- sent
			}()
			ev := w.next(time.Now().Add(p.wait()))
			close(done)
			ok := r.closeIs(ev, code)
			p.judge(r, w, ok, describe(ev, p.wait()))
			w.Close()
			r.note("%d octets sent", <-sentc)
		})}
}

func fmtOffset(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d < 0 {
		return (-d).String() + " before"
	}
	return d.String() + " after"
}

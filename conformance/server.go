package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
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
	fixtures    Fixtures
	pc          *protocol.Client // Key's
	serverKeys  *keys.PublicSet
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

// input is what a response case is made from on a socket whose challenge
// is ch.
func (p *serverProbe) input(ch *liveChallenge, token string) (*ResponseInput, error) {
	in := &ResponseInput{Challenge: ch.raw, Claims: *ch.c, Exporter: ch.exporter, Key: *p.key, Fixtures: p.fixtures,
		Token: token, Rand: rand.Reader}
	if in.Fixtures.Unregistered == nil {
		k, err := p.unknownKey()
		if err != nil {
			return nil, err
		}
		in.Fixtures.Unregistered = k
	}
	return in, nil
}

// good is a correct response to ch by the accepted key; on failure the
// case has failed.
func (p *serverProbe) good(r *caseRun, ch *liveChallenge) string {
	in, err := p.input(ch, "")
	var msg string
	if err == nil {
		msg, err = in.good()
	}
	if err != nil {
		r.fail("the suite cannot sign: " + err.Error())
	}
	return msg
}

// make is the message of rc in answer to ch; on failure the case has
// failed, or been skipped when rc does not apply.
func (p *serverProbe) make(r *caseRun, rc *ResponseCase, ch *liveChallenge, token string) (string, bool) {
	in, err := p.input(ch, token)
	var msg string
	if err == nil {
		msg, err = rc.Build(in)
	}
	var na notApplicable
	switch {
	case errors.As(err, &na):
		r.skip(string(na))
	case err != nil:
		r.fail("the suite cannot make the message: " + err.Error())
	}
	return msg, err == nil
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

// responseCase is the run of a response case of the table: open a socket,
// answer its challenge (or, for a refresh, the session's re-challenge) with
// the case's message, and judge the server's answer.
func (p *serverProbe) responseCase(rc ResponseCase) probeCase {
	pc := probeCase{id: rc.ID, group: rc.Group, section: rc.Section, title: rc.Title, expect: rc.Expected, code: rc.Code,
		rows: rc.Rows, slow: rc.AtExpiry || rc.Refresh}
	// send sends the message and judges the answer.
	send := func(r *caseRun, w *wire, msg string) {
		if err := w.sendText(msg); err != nil {
			r.fail("cannot send the response: " + err.Error())
			return
		}
		if rc.Code != "" || rc.accepted == nil {
			p.observe(r, w, rc.Code)
			return
		}
		ev := w.next(time.Now().Add(p.wait()))
		a, ok := parseAccept(ev.data)
		ok = ok && ev.kind == evMessage && ev.op == opText
		if ok {
			if err := rc.accepted(a); err != nil {
				r.note("%s", err)
				ok = false
			}
		}
		p.judge(r, w, ok, describe(ev, p.wait()))
	}
	switch {
	case rc.Refresh:
		pc.run = p.onSession(func(_ context.Context, r *caseRun, ls *liveSession) {
			rec, ok := p.awaitRechallenge(r, ls)
			if !ok {
				return
			}
			ch := &liveChallenge{raw: string(rec.raw), c: rec.c, exporter: ls.w.exporter, at: rec.at}
			msg, ok := p.make(r, &rc, ch, "")
			if !ok {
				return
			}
			if err := ls.w.sendText(msg); err != nil {
				r.fail("cannot send the response: " + err.Error())
				return
			}
			p.expectClose(r, ls.w, rc.Code)
		})
	case rc.NeedsToken:
		pc.run = func(ctx context.Context, r *caseRun) {
			ls, ok := p.session(ctx, r)
			if !ok {
				return
			}
			defer ls.w.Close()
			w, ch, ok := p.open(ctx, r, dialOptions{})
			if !ok {
				return
			}
			defer w.Close()
			if msg, ok := p.make(r, &rc, ch, ls.sess.Token); ok {
				send(r, w, msg)
			}
		}
	default:
		pc.run = p.onSocket(func(ctx context.Context, r *caseRun, w *wire, ch *liveChallenge) {
			if why := bindingNeeded(rc.Binding, ch); why != "" {
				r.skip(why)
				return
			}
			exp := time.Unix(ch.c.Exp, 0).Add(300 * time.Millisecond)
			if rc.AtExpiry && time.Until(exp) > p.hsTimeout-500*time.Millisecond {
				r.skip(fmt.Sprintf("the challenge lives %d s, longer than the handshake deadline (%s): the server closes with handshake_timeout first",
					ch.c.Exp-ch.c.Iat, p.hsTimeout))
				return
			}
			msg, ok := p.make(r, &rc, ch, "")
			if !ok {
				return
			}
			if rc.AtExpiry && sleepCtx(ctx, time.Until(exp)) != nil {
				r.skip("interrupted")
				return
			}
			send(r, w, msg)
		})
	}
	return pc
}

// bindingNeeded is why a case that needs the channel binding want cannot run
// on a socket whose challenge is ch, or "".
func bindingNeeded(want string, ch *liveChallenge) string {
	switch want {
	case protocol.BindingNone:
		if ch.c.CB != protocol.BindingNone {
			return "the server demands tls-exporter binding"
		}
	case protocol.BindingTLSExporter:
		return needsExporter(ch)
	}
	return ""
}

func (p *serverProbe) cases() []probeCase {
	var cs []probeCase
	add := func(c ...probeCase) { cs = append(cs, c...) }
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
	for _, rc := range ResponseCases() {
		add(p.responseCase(rc))
	}

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
	cs = append(cs, p.openingCases()...)
	cs = append(cs, p.framingCases()...)
	cs = append(cs, p.limitCases()...)
	cs = append(cs, p.sessionCases()...)
	// The final-token cases wait for a fixture's validity to end: among
	// the slow cases, which run first, they come first.
	cs = append(cs, p.finalCases()...)
	cs = append(cs, p.refreshCases()...)
	cs = append(cs, p.keepaliveCases()...)
	for i := range cs {
		if cs[i].rows == nil {
			cs[i].rows = serverCaseRows[cs[i].id]
		}
		if cs[i].rows == nil {
			cs[i].rows = scriptRows(cs[i].id)
		}
	}
	return cs
}

// serverCaseRows are the rows of spec section "Server state machine" that
// the cases defined without them drive, when no session vector says them
// (scriptRows). Cases of RFC 6455 framing and of the HTTP server drive
// none.
var serverCaseRows = map[string][]string{
	"handshake-valid":               {"S4", "S6", "S16"},
	"challenge-fresh-per-socket":    {"S4", "S6"},
	"response-fragmented":           {"S16", "S21"},
	"response-replayed-same-socket": {"S16", "S19"},
	"response-raced-two-sockets":    {"S16"},
	"origin-hostile":                {"S2"},
	"origin-null":                   {"S2"},
	"origin-case-variant":           {"S2"},
	"origin-allowed":                {"S4", "S6"},
	"subprotocol-missing":           {"S3"},
	"subprotocol-other":             {"S3"},
	"compression-offered":           {"S4", "S6"},
	"no-auth-from-url-or-cookie":    {"S4", "S15"},
	"frame-huge-length":             {"S14"},
	"fragments-endless":             {"S14"},
	"fragments-tiny":                {"S14"},
	"ping-flood":                    {"S7"},
	"response-dripped":              {"S7"},
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
	pc   *protocol.Client // the client whose key authenticated it
	sess *protocol.ClientSession
	sent time.Time // when the response went out: the last thing the server heard
	at   time.Time // when the accept arrived
	// refreshing is the refresh that hold answered and whose accept has
	// not arrived yet: it outlives one call of hold.
	refreshing *protocol.ClientHandshake
}

// lifetime is the token lifetime the accept shows: its exp, in whole
// seconds, less the time it arrived.
func (ls *liveSession) lifetime() time.Duration { return ls.sess.Expiry.Sub(ls.at) }

// login is authenticate, keeping the times.
func (p *serverProbe) login(r *caseRun, w *wire, ch *liveChallenge) (*liveSession, bool) {
	return p.loginAs(r, w, ch, p.pc, "")
}

// loginAs authenticates on w as the conforming client pc. When refused is
// not "", a close with 4003 instead of the accept skips the case, saying
// refused, rather than failing it: a fixture that the server no longer
// accepts.
func (p *serverProbe) loginAs(r *caseRun, w *wire, ch *liveChallenge, pc *protocol.Client, refused string) (*liveSession, bool) {
	h := pc.Handshake()
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
	if refused != "" && ev.kind == evClose && ev.code == protocol.CodeUnknownKey.CloseCode() {
		r.skip(refused + ": " + describe(ev, 0))
		return nil, false
	}
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
	return &liveSession{w: w, pc: pc, sess: sess, sent: sent, at: ev.at}, true
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

package conformance

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsproof/wsproof/protocol"
)

// The session after the accept, from the outside: the rows of spec section
// "Server state machine" that a client can drive (S7 to S21, S33, S34) and
// the timing of spec section "Session lifecycle". Each case runs one or
// more session vectors (caseScripts) against the server, with its own
// timers; every message is made live, with the suite's own keys and
// clock, as a conforming client would make it, since the scripts' are
// signed by the vectors' keys at a fixed date.

// Spec sections the session cases cite.
const (
	secKeepalive = "Keepalive"
	secLifecycle = "Session lifecycle"
)

// maxProbeSend bounds an application message the probe sends: a server
// whose max_size is larger is not tested at its limit.
const maxProbeSend = 1 << 20

// probeData is the application message the probe sends where one is
// needed: opaque to wsproof, and harmless to an echo.
var probeData = []byte("wsproof-probe")

// session opens a socket and authenticates on it as a conforming client.
func (p *serverProbe) session(ctx context.Context, r *caseRun) (*liveSession, bool) {
	w, ch, ok := p.open(ctx, r, dialOptions{})
	if !ok {
		return nil, false
	}
	ls, ok := p.login(r, w, ch)
	if !ok {
		w.Close()
		return nil, false
	}
	return ls, true
}

// onSession is the run of a case on one authenticated socket.
func (p *serverProbe) onSession(body func(ctx context.Context, r *caseRun, ls *liveSession)) func(context.Context, *caseRun) {
	return func(ctx context.Context, r *caseRun) {
		ls, ok := p.session(ctx, r)
		if !ok {
			return
		}
		defer ls.w.Close()
		body(ctx, r, ls)
	}
}

// nextControl is the next event that is not a binary message: after the
// accept the server's application may send at any time, and a case never
// depends on it staying silent.
func nextControl(w *wire, deadline time.Time) event {
	for {
		ev := w.next(deadline)
		if ev.kind == evMessage && ev.op == opBinary {
			continue
		}
		return ev
	}
}

func isClose(ev event, code protocol.Code) bool {
	return ev.kind == evClose && ev.code == code.CloseCode() && ev.reason == code.Reason()
}

// expectClose waits for the server to close with code, past its
// application messages, and judges it.
func (p *serverProbe) expectClose(r *caseRun, w *wire, code protocol.Code) event {
	ev := nextControl(w, time.Now().Add(p.wait()))
	p.judge(r, w, r.closeIs(ev, code), describe(ev, p.wait()))
	return ev
}

// serves checks that the server still serves a new client: a valid
// handshake on a new socket.
func (p *serverProbe) serves(ctx context.Context, r *caseRun) bool {
	w, ch, ok := p.open(ctx, r, dialOptions{})
	if !ok {
		return false
	}
	defer w.Close()
	_, ok = p.login(r, w, ch)
	return ok
}

// sessionCases drive an authenticated socket with messages, and end
// sockets from the client's side.
func (p *serverProbe) sessionCases() []probeCase {
	const g = "Session (server state machine)"
	// closeAfter sends what send makes on an authenticated socket and
	// expects code; rows nil: those of the case's scripts.
	closeAfter := func(id string, rows []string, title string, code protocol.Code, send func(r *caseRun, ls *liveSession) error) probeCase {
		return probeCase{id: id, group: g, section: secServerSM, rows: rows, title: title, expect: expClose(code),
			run: p.onSession(func(_ context.Context, r *caseRun, ls *liveSession) {
				if err := send(r, ls); err != nil {
					r.fail("cannot send: " + err.Error())
				}
				if r.verdict {
					return
				}
				p.expectClose(r, ls.w, code)
			})}
	}
	// limit is the session's application message limit, when the probe
	// sends that much.
	limit := func(r *caseRun, ls *liveSession) (int, bool) {
		n := ls.sess.MaxMessageSize
		if n >= maxProbeSend {
			r.skip(fmt.Sprintf("the accept's max_size is %d octets; the probe sends at most %d", n, maxProbeSend))
			return 0, false
		}
		r.note("max_size %d", n)
		return int(n), true
	}
	peerClose := func(id, title string, open bool) probeCase {
		return probeCase{id: id, group: g, section: secServerSM, title: title,
			expect: "a Close frame in reply (not a wsproof error), then a valid handshake on a new socket",
			run: func(ctx context.Context, r *caseRun) {
				w, ch, ok := p.open(ctx, r, dialOptions{})
				if !ok {
					return
				}
				defer w.Close()
				if open {
					if _, ok := p.login(r, w, ch); !ok {
						return
					}
				}
				if err := w.sendClose(1000, "wsproof-probe"); err != nil {
					r.fail("cannot send the Close frame: " + err.Error())
					return
				}
				ev := nextControl(w, time.Now().Add(p.wait()))
				got := describe(ev, p.wait())
				if ev.kind != evClose || ev.code >= 4000 && ev.code <= 4999 {
					p.judge(r, w, false, got)
					return
				}
				if v := w.Violations(); len(v) > 0 {
					p.judge(r, w, false, got)
					return
				}
				if p.serves(ctx, r) {
					r.pass(got + " in reply; then a valid handshake")
				}
			}}
	}
	return []probeCase{
		closeAfter("open-text-message", nil,
			"A text message on an authenticated socket with no challenge outstanding.", protocol.CodeUnexpectedMessage,
			func(_ *caseRun, ls *liveSession) error { return ls.w.sendText(string(probeData)) }),
		closeAfter("open-text-oversized", nil,
			"A text message of 4097 octets on an authenticated socket: the size limit comes before the type.", protocol.CodeTooLarge,
			func(_ *caseRun, ls *liveSession) error {
				return ls.w.sendText(strings.Repeat("w", protocol.MaxHandshakeMessage+1))
			}),
		closeAfter("open-binary-oversized", nil,
			"An application message one octet over the accept's max_size.", protocol.CodeTooLarge,
			func(r *caseRun, ls *liveSession) error {
				n, ok := limit(r, ls)
				if !ok {
					return nil
				}
				return ls.w.send(opBinary, make([]byte, n+1))
			}),
		closeAfter("open-binary-at-limit", []string{"S18", "S19"},
			"An application message of exactly max_size octets is authorized, not refused; a text message after it shows the socket still open.",
			protocol.CodeUnexpectedMessage,
			func(r *caseRun, ls *liveSession) error {
				n, ok := limit(r, ls)
				if !ok {
					return nil
				}
				if err := ls.w.send(opBinary, make([]byte, n)); err != nil {
					return err
				}
				return ls.w.sendText(string(probeData))
			}),
		peerClose("peer-close-challenged", "A Close frame (1000) instead of the response: the server replies, ends the socket, and serves the next client.", false),
		peerClose("peer-close-open", "A Close frame (1000) on an authenticated socket: the server replies and ends it.", true),
		{id: "abandon-handshakes", group: g, section: secServerSM,
			title:  fmt.Sprintf("%d sockets, one after the other, dropped without a Close frame after their challenge (more than the default 16 pending sockets per address): each is released at once.", abandonCount),
			expect: fmt.Sprintf("%d upgrades and challenges, then a valid handshake; no 429", abandonCount),
			run: func(ctx context.Context, r *caseRun) {
				for i := range abandonCount {
					if err := p.paceCase(ctx, r); err != nil {
						r.skip("interrupted")
						return
					}
					dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					w, _, err := dialWire(dctx, p.u, p.tlsConf, dialOptions{origin: p.origin})
					cancel()
					if err != nil {
						r.fail(fmt.Sprintf("socket %d: %s", i+1, describeDialErr(err)))
						var ue *upgradeError
						if errors.As(err, &ue) && ue.status == http.StatusTooManyRequests {
							r.note("the abandoned sockets may still count against the server's cap on pending sockets, or its handshake rate is below --rate")
						}
						return
					}
					_, ok := p.readChallenge(r, w)
					w.Close()
					if !ok {
						return
					}
				}
				if p.serves(ctx, r) {
					r.pass(fmt.Sprintf("%d sockets abandoned, then a valid handshake", abandonCount))
				}
			}},
		{id: "abandon-session", group: g, section: secServerSM,
			title:  "An authenticated socket dropped without a Close frame: the server ends it and serves the next client.",
			expect: "a valid handshake on a new socket",
			run: func(ctx context.Context, r *caseRun) {
				ls, ok := p.session(ctx, r)
				if !ok {
					return
				}
				ls.w.Close()
				if p.serves(ctx, r) {
					r.pass("dropped; then a valid handshake")
				}
			}},
	}
}

// abandonCount is how many handshakes abandon-handshakes drops.
const abandonCount = 20

// rechallenge is the server's re-challenge as the probe received it.
type rechallenge struct {
	raw []byte
	c   *challengeClaims
	at  time.Time
}

// exp is the re-challenge's exp as a time.
func (rc *rechallenge) exp() time.Time { return time.Unix(rc.c.Exp, 0) }

// awaitRechallenge waits, as a client whose application is quiet, for the
// server's re-challenge (S12). The refresh is due at the token's exp less
// the server's RefreshBefore, which is at most half the token lifetime: a
// --refresh-wait that covers the time to the token's exp always sees it,
// and a shorter one that sees nothing skips the case.
func (p *serverProbe) awaitRechallenge(r *caseRun, ls *liveSession) (*rechallenge, bool) {
	if p.refreshWait == 0 {
		r.skip("needs a refresh wait (ServerTarget.RefreshWait; probe: --refresh-wait): the server's token lifetime is always enough")
		return nil, false
	}
	untilExp := time.Until(ls.sess.Expiry)
	wait, enough := p.refreshWait, p.refreshWait >= untilExp
	if enough {
		wait = untilExp + 1500*time.Millisecond
	}
	ev := nextControl(ls.w, time.Now().Add(wait))
	switch {
	case ev.kind == evTimeout && !enough:
		r.skip(fmt.Sprintf("no re-challenge within --refresh-wait %s; the token lives %s (the accept's exp), and its refresh may come as late as its exp",
			p.refreshWait, ls.lifetime().Round(time.Second)))
		return nil, false
	case r.closeIs(ev, protocol.CodeSessionRevoked) && ev.at.After(ls.sess.Expiry.Add(-time.Second)):
		r.skip("the session ended at the token's exp with session_revoked: the token is final (S8), so it has no refresh")
		return nil, false
	case ev.kind != evMessage:
		p.judge(r, ls.w, false, "no re-challenge before the token's exp: "+describe(ev, wait))
		return nil, false
	}
	c, err := parseChallenge(ev.data)
	if err != nil {
		r.fail(fmt.Sprintf("a text message that is not a re-challenge (%v)", err))
		return nil, false
	}
	return &rechallenge{raw: ev.data, c: c, at: ev.at}, true
}

// checkRechallenge lists what is wrong with rc's times and socket (spec
// section "Refresh"): the session's sid, exp = min(token exp, iat + 300),
// and a refresh no earlier than half the token lifetime before its exp.
func checkRechallenge(ls *liveSession, rc *rechallenge) []string {
	var problems []string
	tokenExp := ls.sess.Expiry.Unix()
	if rc.c.Sid != ls.sess.SocketID {
		problems = append(problems, "the re-challenge carries another sid than the session's")
	}
	if rc.c.Exp > tokenExp {
		problems = append(problems, fmt.Sprintf("the re-challenge expires %d s after the token", rc.c.Exp-tokenExp))
	} else if want := min(tokenExp, rc.c.Iat+int64(protocol.MaxChallengeLifetime/time.Second)); rc.c.Exp != want {
		problems = append(problems, fmt.Sprintf("the re-challenge's exp is %d, not min(token exp, iat + 300) = %d", rc.c.Exp, want))
	}
	earliest := ls.sess.Expiry.Add(-(ls.lifetime()+time.Second)/2 - 250*time.Millisecond)
	if rc.at.Before(earliest) {
		problems = append(problems, fmt.Sprintf("the re-challenge came %s before the token's exp, more than half the token lifetime (%s)",
			ls.sess.Expiry.Sub(rc.at).Round(10*time.Millisecond), ls.lifetime().Round(time.Second)))
	}
	return problems
}

// refresh answers rc as a conforming client, with an application message
// sent while the refresh is outstanding, and reads the new accept.
func (p *serverProbe) refresh(r *caseRun, ls *liveSession, rc *rechallenge) (*protocol.ClientSession, bool) {
	h := ls.pc.Refresh(ls.sess)
	resp, err := h.ReadChallenge(rc.raw, rand.Reader, time.Now(), ls.w.exporter)
	if err != nil {
		r.fail(fmt.Sprintf("the re-challenge does not verify for a conforming client (%s)", protocol.CodeOf(err)))
		r.note("%s", oneLine(err.Error()))
		return nil, false
	}
	if err := ls.w.send(opBinary, probeData); err != nil {
		r.fail("cannot send: " + err.Error())
		return nil, false
	}
	if err := ls.w.send(opText, resp); err != nil {
		r.fail("cannot send the refresh response: " + err.Error())
		return nil, false
	}
	ev := nextControl(ls.w, time.Now().Add(p.wait()))
	if ev.kind != evMessage {
		p.judge(r, ls.w, false, "no accept for a valid refresh response: "+describe(ev, p.wait()))
		return nil, false
	}
	sess, err := h.ReadAccept(ev.data, time.Now())
	if err != nil {
		r.fail(fmt.Sprintf("the new accept is refused by a conforming client (%s)", protocol.CodeOf(err)))
		r.note("%s", oneLine(err.Error()))
		return nil, false
	}
	return sess, true
}

// refreshCases wait for the server's re-challenge (spec section
// "Refresh"); they run only with --refresh-wait.
func (p *serverProbe) refreshCases() []probeCase {
	const g = "Refresh"
	onRefresh := func(body func(ctx context.Context, r *caseRun, ls *liveSession, rc *rechallenge)) func(context.Context, *caseRun) {
		return p.onSession(func(ctx context.Context, r *caseRun, ls *liveSession) {
			rc, ok := p.awaitRechallenge(r, ls)
			if ok {
				body(ctx, r, ls, rc)
			}
		})
	}
	expired := protocol.CodeTokenExpired
	return []probeCase{
		{id: "refresh-valid", group: g, section: secRefresh, slow: true,
			title: "The re-challenge comes no earlier than half the token lifetime before its exp, with the session's sid and exp = min(token exp, iat + 300); " +
				"an application message while it is outstanding, then the response by the session's key, get a new accept whose token expires later.",
			expect: "a valid re-challenge, then " + expAccept + " with a later exp",
			run: onRefresh(func(_ context.Context, r *caseRun, ls *liveSession, rc *rechallenge) {
				if problems := checkRechallenge(ls, rc); len(problems) > 0 {
					p.judge(r, ls.w, false, strings.Join(problems, "; "))
					return
				}
				sess, ok := p.refresh(r, ls, rc)
				if !ok {
					return
				}
				got := fmt.Sprintf("re-challenge %s after the accept, %s before the token's exp; new accept, exp %+d s",
					rc.at.Sub(ls.at).Round(10*time.Millisecond), ls.sess.Expiry.Sub(rc.at).Round(10*time.Millisecond),
					sess.Expiry.Unix()-ls.sess.Expiry.Unix())
				p.judge(r, ls.w, sess.Expiry.After(ls.sess.Expiry), got)
			})},
		{id: "refresh-then-text", group: g, section: secServerSM, slow: true,
			title:  "After a successful refresh, another text message: no challenge is outstanding any more.",
			expect: expClose(protocol.CodeUnexpectedMessage),
			run: onRefresh(func(_ context.Context, r *caseRun, ls *liveSession, rc *rechallenge) {
				if _, ok := p.refresh(r, ls, rc); !ok {
					return
				}
				ls.w.sendText(string(probeData))
				p.expectClose(r, ls.w, protocol.CodeUnexpectedMessage)
			})},
		{id: "refresh-unanswered", group: g, section: secRefresh, slow: true, rows: []string{"S12", "S9", "S10"},
			title: "A re-challenge left unanswered: the socket ends with token_expired at the re-challenge's exp, which is no later than the token's " +
				"(the two are the same instant when the refresh comes RefreshBefore ≤ 300 s before the token's exp).",
			expect: expClose(expired) + " at the re-challenge's exp (within 1 s after it)",
			run: onRefresh(func(_ context.Context, r *caseRun, ls *liveSession, rc *rechallenge) {
				if rc.c.Exp > ls.sess.Expiry.Unix() {
					p.judge(r, ls.w, false, fmt.Sprintf("the re-challenge expires %d s after the token", rc.c.Exp-ls.sess.Expiry.Unix()))
					return
				}
				wait := time.Until(rc.exp()) + 2*time.Second
				ev := nextControl(ls.w, time.Now().Add(wait))
				d := ev.at.Sub(rc.exp())
				got := describe(ev, wait)
				if ev.kind != evTimeout {
					got += fmt.Sprintf(" %s the re-challenge's exp", fmtOffset(d))
				}
				p.judge(r, ls.w, r.closeIs(ev, expired) && d > -time.Second && d < 2*time.Second, got)
			})},
		{id: "refresh-late-response", group: g, section: secRefresh, slow: true, rows: []string{"S9", "S10", "S20"},
			title: "A correct refresh response sent just after the re-challenge's exp: token_expired (retryable), not challenge_expired, " +
				"even when it arrives before the server's timer fires.",
			expect: expClose(expired),
			run: onRefresh(func(_ context.Context, r *caseRun, ls *liveSession, rc *rechallenge) {
				resp, err := ls.pc.Refresh(ls.sess).ReadChallenge(rc.raw, rand.Reader, time.Now(), ls.w.exporter)
				if err != nil {
					r.fail(fmt.Sprintf("the re-challenge does not verify for a conforming client (%s)", protocol.CodeOf(err)))
					return
				}
				// Reading on (and answering Pings) until just after exp, as
				// a client whose answer is slow.
				ev := nextControl(ls.w, rc.exp().Add(100*time.Millisecond))
				if ev.kind != evTimeout {
					d := ev.at.Sub(rc.exp())
					r.note("the server ended the socket %s the re-challenge's exp, before the late response was sent", fmtOffset(d))
					p.judge(r, ls.w, r.closeIs(ev, expired) && d > -time.Second, describe(ev, 0))
					return
				}
				ls.w.send(opText, resp)
				r.note("response sent %s the re-challenge's exp", fmtOffset(time.Since(rc.exp())))
				p.expectClose(r, ls.w, expired)
			})},
	}
}

// firstPing waits, as a quiet client, for the server's first Ping after
// the accept, and returns the Ping interval it shows: the time from the
// response (the last thing the server heard, and the session's start) to
// that Ping. It skips the case when no Ping comes within --ping-wait.
func (p *serverProbe) firstPing(r *caseRun, ls *liveSession) (time.Duration, bool) {
	if p.pingWait == 0 {
		r.skip("needs a Ping wait (ServerTarget.PingWait; probe: --ping-wait): the server's Ping interval, plus a little")
		return 0, false
	}
	ls.w.reportPings = true
	deadline := ls.sent.Add(p.pingWait)
	for {
		ev := nextControl(ls.w, deadline)
		switch {
		case ev.kind == evPing:
			return ev.at.Sub(ls.sent), true
		case ev.kind == evMessage:
			continue // a re-challenge, left for later
		case ev.kind == evTimeout:
			r.skip(fmt.Sprintf("no Ping within --ping-wait %s of the accept: the server's Ping interval is longer (30 s by default), or it does not ping", p.pingWait))
		default:
			p.judge(r, ls.w, false, "no Ping: "+describe(ev, p.pingWait))
		}
		return 0, false
	}
}

// firstPingUnanswered is firstPing for a client that answers no Ping, and
// notes the interval.
func (p *serverProbe) firstPingUnanswered(r *caseRun, ls *liveSession) (time.Duration, bool) {
	ls.w.noPong = true
	interval, ok := p.firstPing(r, ls)
	if ok {
		r.note("Ping interval %s", interval.Round(10*time.Millisecond))
	}
	return interval, ok
}

// hold reads ls's socket until until as a client whose application is
// quiet: it skips the server's application messages and Pings, answers
// each re-challenge as a conforming client, and returns the event that
// ended the socket, or the timeout at until. ok is false when the case
// failed on the way.
func (p *serverProbe) hold(r *caseRun, ls *liveSession, until time.Time) (ev event, ok bool) {
	for {
		ev := nextControl(ls.w, until)
		switch {
		case ev.kind == evPing:
		case ev.kind == evMessage && ls.refreshing == nil:
			h := ls.pc.Refresh(ls.sess)
			resp, err := h.ReadChallenge(ev.data, rand.Reader, time.Now(), ls.w.exporter)
			if err != nil {
				r.fail(fmt.Sprintf("a re-challenge does not verify for a conforming client (%s)", protocol.CodeOf(err)))
				r.note("%s", oneLine(err.Error()))
				return ev, false
			}
			ls.w.send(opText, resp)
			ls.refreshing = h
		case ev.kind == evMessage:
			sess, err := ls.refreshing.ReadAccept(ev.data, time.Now())
			if err != nil {
				r.fail(fmt.Sprintf("a refreshed accept is refused by a conforming client (%s)", protocol.CodeOf(err)))
				r.note("%s", oneLine(err.Error()))
				return ev, false
			}
			ls.sess, ls.refreshing = sess, nil
		default:
			return ev, true
		}
	}
}

// awaitKeepaliveTimeout waits, answering nothing, for the keepalive
// timeout due at due, two Ping intervals after what since names, and
// judges it: keepalive_timeout from 500 ms before due to 1.5 s after it.
// more is added to what the case got.
func (p *serverProbe) awaitKeepaliveTimeout(r *caseRun, ls *liveSession, due time.Time, since, more string) {
	var ev event
	for {
		ev = nextControl(ls.w, due.Add(1500*time.Millisecond))
		if ev.kind != evPing && ev.kind != evMessage { // a re-challenge stays unanswered
			break
		}
	}
	d := ev.at.Sub(due)
	got := describe(ev, time.Until(due)+1500*time.Millisecond)
	if ev.kind != evTimeout {
		got += fmt.Sprintf(" %s two Ping intervals%s", fmtOffset(d), since)
	}
	ok := r.closeIs(ev, protocol.CodeKeepaliveTimeout) && d > -500*time.Millisecond && d < 1500*time.Millisecond
	p.judge(r, ls.w, ok, got+more)
}

// holdDoing is hold while do runs every period, from the start, on
// another goroutine; do's last run ends before holdDoing returns.
func (p *serverProbe) holdDoing(r *caseRun, ls *liveSession, until time.Time, period time.Duration, do func()) (event, bool) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			do()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	ev, ok := p.hold(r, ls, until)
	close(done)
	wg.Wait()
	return ev, ok
}

// keepaliveCases time the server's Pings and keepalive timeout (spec
// section "Keepalive"); they run only with --ping-wait. The probe's wire
// decides whether Pings get Pongs.
func (p *serverProbe) keepaliveCases() []probeCase {
	const g = "Keepalive"
	timeout := protocol.CodeKeepaliveTimeout
	return []probeCase{
		{id: "keepalive-no-pong", group: g, section: secKeepalive, slow: true, rows: []string{"S13", "S11"},
			title:  "After the accept the probe sends nothing and answers no Ping: the server pings after one interval and closes two intervals after the response.",
			expect: expClose(timeout) + " two Ping intervals after the response (within 1 s)",
			run: p.onSession(func(_ context.Context, r *caseRun, ls *liveSession) {
				interval, ok := p.firstPingUnanswered(r, ls)
				if !ok {
					return
				}
				due := ls.sent.Add(2 * interval)
				if due.Add(500 * time.Millisecond).After(ls.sess.Expiry) {
					r.skip(fmt.Sprintf("the keepalive timeout (2 × %s) ends no earlier than the token (%s): the token's end would come first",
						interval.Round(10*time.Millisecond), ls.lifetime().Round(time.Second)))
					return
				}
				p.awaitKeepaliveTimeout(r, ls, due, "", "")
			})},
		{id: "keepalive-pong", group: g, section: secKeepalive, slow: true, rows: []string{"S13", "S21"},
			title:  "After the accept the probe sends nothing but Pongs: the server pings every interval and keeps the socket open past two intervals.",
			expect: "Pings one interval apart, and the socket open two intervals and a second after the response",
			run: p.onSession(func(_ context.Context, r *caseRun, ls *liveSession) {
				interval, ok := p.firstPing(r, ls)
				if !ok {
					return
				}
				until := ls.sent.Add(2*interval + 1500*time.Millisecond)
				ev, ok := p.hold(r, ls, until)
				if !ok {
					return
				}
				if ev.kind != evTimeout {
					p.judge(r, ls.w, false, describe(ev, 0)+fmt.Sprintf(" %s the response, with Pongs to every Ping", fmtOffset(ev.at.Sub(ls.sent))))
					return
				}
				pings := ls.w.Pings()
				var problems []string
				for i := 1; i < len(pings); i++ {
					if gap := pings[i].Sub(pings[i-1]); gap < interval/2 || gap > interval+time.Second {
						problems = append(problems, fmt.Sprintf("Pings %d and %d are %s apart", i, i+1, gap.Round(10*time.Millisecond)))
					}
				}
				if len(pings) < 2 {
					problems = append(problems, fmt.Sprintf("%d Ping in two intervals", len(pings)))
				}
				got := fmt.Sprintf("open; %d Pings, interval %s", len(pings), interval.Round(10*time.Millisecond))
				if len(problems) > 0 {
					got = strings.Join(problems, "; ")
				}
				p.judge(r, ls.w, len(problems) == 0, got)
			})},
		{id: "keepalive-messages", group: g, section: secKeepalive, slow: true, rows: []string{"S13", "S18", "S11"},
			title: "After the first Ping the probe answers no Ping but sends an application message every half interval: messages keep " +
				"the socket alive; when they stop, the server closes two intervals after the last.",
			expect: "the socket open two intervals and a second after the response, then " + expClose(timeout) +
				" two Ping intervals after the last message (within 1 s)",
			run: p.onSession(func(_ context.Context, r *caseRun, ls *liveSession) {
				interval, ok := p.firstPingUnanswered(r, ls)
				if !ok {
					return
				}
				var last time.Time // when the last message went out
				ev, ok := p.holdDoing(r, ls, ls.sent.Add(2*interval+1500*time.Millisecond), interval/2, func() {
					if ls.w.send(opBinary, probeData) == nil {
						last = time.Now()
					}
				})
				if !ok {
					return
				}
				if ev.kind != evTimeout {
					p.judge(r, ls.w, false, describe(ev, 0)+fmt.Sprintf(" %s the response, with a message every half interval",
						fmtOffset(ev.at.Sub(ls.sent))))
					return
				}
				due := last.Add(2 * interval)
				if due.Add(1500 * time.Millisecond).After(ls.sess.Expiry) {
					r.skip(fmt.Sprintf("the keepalive timeout after the last message ends no earlier than the token (%s): the token's end would come first",
						ls.lifetime().Round(time.Second)))
					return
				}
				p.awaitKeepaliveTimeout(r, ls, due, " after the last message", "; before, open two intervals after the response, with messages")
			})},
		{id: "keepalive-client-pings", group: g, section: secKeepalive, slow: true, rows: []string{"S21"},
			title:  "After the accept the probe answers no Ping but sends its own, every half interval: a Ping from the client keeps the socket alive too.",
			expect: "the socket open two intervals and a second after the response",
			run: p.onSession(func(_ context.Context, r *caseRun, ls *liveSession) {
				ls.w.noPong = true
				interval, ok := p.firstPing(r, ls)
				if !ok {
					return
				}
				ev, ok := p.holdDoing(r, ls, ls.sent.Add(2*interval+1500*time.Millisecond), interval/2, func() {
					ls.w.write(frame{fin: true, op: opPing, masked: true, payload: probeData, length: -1})
				})
				if !ok {
					return
				}
				got := "open, with the probe's Pings and no Pong"
				if ev.kind != evTimeout {
					got = describe(ev, 0) + fmt.Sprintf(" %s the response", fmtOffset(ev.at.Sub(ls.sent)))
				}
				p.judge(r, ls.w, ev.kind == evTimeout, got)
			})},
	}
}

// FinalWait is the longest the final-token cases follow a session of
// Fixtures.Expiring, refreshing it, for the key's validity to end.
const FinalWait = 5 * time.Minute

// finalCases follow a session of the key Fixtures.Expiring to the end of
// the key's validity (spec section "Session lifecycle", S8): the token
// whose exp is the key's is final, so the server does not re-challenge
// it, and the session ends at that exp with session_revoked, not
// token_expired, whether its timer or a message comes first.
func (p *serverProbe) finalCases() []probeCase {
	const g = "Final token"
	revoked := protocol.CodeSessionRevoked
	final := func(id, title string, message bool) probeCase {
		expect := expClose(revoked) + " at the exp of the last token (within 2 s after it), which no re-challenge extends"
		return probeCase{id: id, group: g, section: secLifecycle, slow: true, rows: []string{"S8"}, title: title, expect: expect,
			run: func(ctx context.Context, r *caseRun) {
				k, err := need(p.fixtures.Expiring, "expiring", "a registered key whose validity ends during the run")
				if err != nil {
					r.skip(err.Error())
					return
				}
				pc, err := protocol.NewClient(&protocol.ClientConfig{KeyID: k.ID, Signer: k.Signer, Algorithm: k.Alg,
					ServerKeys: p.serverKeys, ServerIdentity: p.identity})
				if err != nil {
					r.skip("the expiring fixture: " + err.Error())
					return
				}
				w, ch, ok := p.open(ctx, r, dialOptions{})
				if !ok {
					return
				}
				defer w.Close()
				ls, ok := p.loginAs(r, w, ch, pc, "the server refused the expiring key: its validity may have ended before the case ran")
				if ok {
					p.followToEnd(r, ls, message)
				}
			}}
	}
	return []probeCase{
		final("final-token", "A session of a key whose validity ends during the run, refreshed until its token's exp is the key's: "+
			"that token gets no re-challenge, and at its exp the server ends the session with session_revoked.", false),
		final("final-token-message", "As final-token, with an application message sent at the final token's exp: it is "+
			"refused with session_revoked, not token_expired.", true),
	}
}

// followToEnd holds ls as a conforming client until the session ends or
// FinalWait passes, answering every re-challenge; with message, it sends an
// application message at the exp of a token that no refresh has replaced
// (the server's timer may still come first: either way the session must
// end with session_revoked). It judges the end: session_revoked at the last token's exp, and
// no re-challenge whose token expires no later than the one it replaces.
func (p *serverProbe) followToEnd(r *caseRun, ls *liveSession, message bool) {
	limit := time.Now().Add(FinalWait)
	refreshes := 0
	for {
		exp := ls.sess.Expiry
		until := exp.Add(2 * time.Second)
		if message {
			until = exp
		}
		if ls.refreshing != nil { // a refresh answered: its accept decides
			until = time.Now().Add(p.wait())
		}
		if until.After(limit) {
			r.skip(fmt.Sprintf("the expiring key's session did not end within %s (after %d refreshes): its validity ends later", FinalWait, refreshes))
			return
		}
		ev, ok := p.hold(r, ls, until)
		if !ok {
			return
		}
		if ls.sess.Expiry != exp {
			if !ls.sess.Expiry.After(exp) {
				p.judge(r, ls.w, false, "a re-challenge of the final token: its new token expires no later")
				return
			}
			refreshes++
			if ev.kind == evTimeout {
				continue
			}
			exp = ls.sess.Expiry
		}
		if message && ev.kind != evTimeout {
			r.note("the server ended the session %s the token's exp, before the message was sent", fmtOffset(ev.at.Sub(exp)))
		}
		if message && ev.kind == evTimeout {
			if err := ls.w.send(opBinary, probeData); err != nil {
				r.fail("cannot send: " + err.Error())
				return
			}
			r.note("message sent %s the token's exp", fmtOffset(time.Since(exp)))
			ev = nextControl(ls.w, time.Now().Add(2*time.Second))
			if ev.kind == evEOF && errors.Is(ev.err, syscall.ECONNRESET) {
				// The server closed as the message arrived: closing a
				// socket with unread input resets it, and the reset can
				// discard the Close frame sent just before.
				r.skip("the connection was reset as the message arrived, which can discard the server's Close frame: " +
					"the server's timer and the message raced; run the case again")
				return
			}
		}
		d := ev.at.Sub(exp)
		got := describe(ev, time.Until(exp.Add(2*time.Second)))
		if ev.kind != evTimeout {
			got += fmt.Sprintf(" %s the token's exp", fmtOffset(d))
		}
		r.note("%d refreshes before the final token", refreshes)
		p.judge(r, ls.w, r.closeIs(ev, protocol.CodeSessionRevoked) && d > -time.Second && d < 2*time.Second, got)
		return
	}
}

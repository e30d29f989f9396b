package conformance

import (
	"fmt"
	"strings"
	"time"

	"github.com/wsproof/wsproof/protocol"
)

// The client's session, from the server's side: the rows of spec section
// "Client state machine" that a server can drive (C4 to C22). As in
// server_session.go, each case runs one or more session vectors
// (caseScripts) against the client, and the suite makes every message live
// with its own keys and clock.

// clientCaseRows are the rows of spec section "Client state machine" that
// the cases defined without them drive, when no session vector says them
// (scriptRows; ChallengeCases give their own). Cases of RFC 6455 framing
// drive none.
var clientCaseRows = map[string][]string{
	"challenge-fragmented":           {"C8", "C12"},
	"ping-before-challenge":          {"C8", "C12"},
	"accept-extra-members":           {"C12"},
	"response-reflected":             {"C11"},
	"accept-missing-token":           {"C12"},
	"accept-empty-token":             {"C12"},
	"accept-groups-not-array":        {"C12"},
	"accept-duplicate-member":        {"C12"},
	"rechallenge-twice":              {"C19", "C20"},
	"rechallenge-reflected-response": {"C19"},
	"subprotocol-not-selected":       {"C2"},
	"subprotocol-wrong":              {"C2"},
	"extension-accepted":             {"C2"},
}

// rowsNotDriven are the rows of spec section "Client state machine" that no
// case of this run drives, and why.
func (p *clientProbe) rowsNotDriven() []RowGap {
	var cases []Case
	for _, cc := range p.allCases() {
		cases = append(cases, cc.info())
	}
	return rowsNotDriven("client", cases,
		"not run: give --ping-wait D for a client that sends Pings (a browser page cannot; the server's keepalive covers it)")
}

// sessionCases drive the handshake deadline, the accept's max_size, the
// session after the accept and its refresh.
func (p *clientProbe) sessionCases() []clientCase {
	const g = "Session (client state machine)"
	now := func() int64 { return time.Now().Unix() }
	var cs []clientCase
	add := func(c clientCase) { cs = append(cs, c) }
	// refreshing puts the client in REFRESHING: the handshake, a
	// re-challenge and its response.
	refreshing := func(s *csess) error {
		if err := s.handshake(); err != nil {
			return err
		}
		rc, err := s.rechallenge(nil, nil)
		if err != nil {
			return err
		}
		if err := s.send(rc); err != nil {
			return err
		}
		if err := s.readResponse(); err != nil {
			return fmt.Errorf("re-challenge: %w", err)
		}
		return nil
	}

	add(clientCase{id: "await-challenge-timeout", group: g, section: secClientSM,
		code: protocol.CodeHandshakeTimeout, patient: true,
		title:  "After the upgrade the probe sends nothing: the client's handshake deadline passes (it must be shorter than --handshake-wait).",
		script: func(*csess) error { return nil }})
	add(clientCase{id: "await-accept-timeout", group: g, section: secClientSM,
		code: protocol.CodeHandshakeTimeout, patient: true,
		title: "A valid challenge, the client's response, and no accept: the client's handshake deadline passes.",
		script: func(s *csess) error {
			if err := s.challenge(); err != nil {
				return err
			}
			return s.readResponse()
		}})
	for _, c := range []struct {
		id, title string
		edit      func(o jobj) jobj
	}{
		{"accept-without-max-size", "An accept without max_size, which every accept carries.", func(o jobj) jobj { return o.del("max_size") }},
		{"accept-max-size-zero", "An accept whose max_size is 0; it is 1 to 2^30.", func(o jobj) jobj { return o.set("max_size", "0") }},
		{"accept-max-size-over-limit", "An accept whose max_size is 2^30 + 1.", func(o jobj) jobj { return o.set("max_size", fmt.Sprint(1<<30+1)) }},
		{"accept-max-size-string", "An accept whose max_size is a string.", func(o jobj) jobj { return o.set("max_size", `"65536"`) }},
	} {
		add(clientCase{id: c.id, group: g, section: step(secAccept, 2), rows: []string{"C12"}, code: protocol.CodeMalformed, title: c.title,
			script: func(s *csess) error {
				if err := s.challenge(); err != nil {
					return err
				}
				if err := s.readResponse(); err != nil {
					return err
				}
				return s.send(s.acceptMsg(c.edit))
			}})
	}
	add(clientCase{id: "binary-in-open-and-refreshing", group: g, section: secClientSM, success: true,
		title: "Application messages after the accept and while a refresh is outstanding are delivered, not refused: the client goes on to answer the re-challenge and take the new accept.",
		script: func(s *csess) error {
			if err := s.handshake(); err != nil {
				return err
			}
			if err := s.w.send(opBinary, probeData); err != nil {
				return err
			}
			rc, err := s.rechallenge(nil, nil)
			if err != nil {
				return err
			}
			if err := s.send(rc); err != nil {
				return err
			}
			if err := s.readResponse(); err != nil {
				return fmt.Errorf("re-challenge: %w", err)
			}
			if err := s.w.send(opBinary, probeData); err != nil {
				return err
			}
			s.summary = "valid response with application messages around it"
			return s.accept()
		}})
	refreshBad := func(id, section string, rows []string, code protocol.Code, title string, then func(s *csess) error) {
		add(clientCase{id: id, group: g, section: section, rows: rows, code: code, title: title,
			script: func(s *csess) error {
				if err := refreshing(s); err != nil {
					return err
				}
				return then(s)
			}})
	}
	refreshBad("refresh-accept-expired", step(secAccept, 3), []string{"C21"}, protocol.CodeTokenExpired,
		"The refresh's accept has an exp an hour ago.",
		func(s *csess) error {
			return s.send(s.acceptMsg(func(o jobj) jobj { return o.set("exp", fmt.Sprint(now()-3600)) }))
		})
	refreshBad("refresh-accept-without-max-size", step(secAccept, 2), []string{"C21"}, protocol.CodeMalformed,
		"The refresh's accept has no max_size.",
		func(s *csess) error { return s.send(s.acceptMsg(func(o jobj) jobj { return o.del("max_size") })) })
	refreshBad("refreshing-accept-oversized", secClientSM, []string{"C16"}, protocol.CodeTooLarge,
		"While the refresh is outstanding, an accept of more than 16384 octets.",
		func(s *csess) error {
			return s.send(s.acceptMsg(func(o jobj) jobj { return o.set("pad", jstr(strings.Repeat("w", 16400))) }))
		})
	refreshBad("refreshing-binary-oversized", secClientSM, []string{"C16"}, protocol.CodeTooLarge,
		"While the refresh is outstanding, a binary message of 65537 octets: over the default application message limit.",
		func(s *csess) error {
			s.r.note("assumes the client's default limit of 65536 octets")
			return s.w.send(opBinary, make([]byte, 65537))
		})
	refreshBad("refreshing-response-reflected", secClientSM, []string{"C20"}, protocol.CodeUnexpectedMessage,
		"While the refresh is outstanding, the client's own response sent back instead of the accept.",
		func(s *csess) error { return s.send(s.response) })

	if p.pingWait > 0 {
		add(clientCase{id: "keepalive-client-no-pong", group: g, section: secKeepalive, rows: []string{"C14", "C13"},
			code:   protocol.CodeKeepaliveTimeout,
			expect: expClose(protocol.CodeKeepaliveTimeout) + " two Ping intervals after the accept (within 1 s)",
			title:  "After the accept the probe sends nothing and answers no Ping: the client pings after one interval and closes two intervals after the accept.",
			script: func(s *csess) error {
				if err := s.challenge(); err != nil {
					return err
				}
				if err := s.readResponse(); err != nil {
					return err
				}
				s.w.noPong, s.w.reportPings = true, true
				sent := time.Now()
				if err := s.accept(); err != nil {
					return err
				}
				interval, ok := s.firstPing(sent)
				if !ok {
					return nil
				}
				due := sent.Add(2 * interval)
				var ev event
				for {
					ev = s.w.next(due.Add(1500 * time.Millisecond))
					if ev.kind != evPing && !(ev.kind == evMessage && ev.op == opBinary) {
						break
					}
				}
				d := ev.at.Sub(due)
				got := describe(ev, time.Until(due)+1500*time.Millisecond)
				if ev.kind != evTimeout {
					got += fmt.Sprintf(" %s two Ping intervals", fmtOffset(d))
				}
				code := protocol.CodeKeepaliveTimeout
				s.judge(s.r.closeIs(ev, code) && d > -500*time.Millisecond && d < 1500*time.Millisecond, got)
				return nil
			}})
		add(clientCase{id: "keepalive-client-pong", group: g, section: secKeepalive, rows: []string{"C14", "C22"}, success: true,
			title: "After the accept the probe sends nothing but Pongs: the client pings every interval and keeps the socket open past two intervals.",
			script: func(s *csess) error {
				if err := s.challenge(); err != nil {
					return err
				}
				if err := s.readResponse(); err != nil {
					return err
				}
				s.w.reportPings = true
				sent := time.Now()
				if err := s.accept(); err != nil {
					return err
				}
				interval, ok := s.firstPing(sent)
				if !ok {
					return nil
				}
				until := sent.Add(2*interval + 1500*time.Millisecond)
				for {
					ev := s.w.next(until)
					switch {
					case ev.kind == evPing, ev.kind == evMessage && ev.op == opBinary:
						continue
					case ev.kind != evTimeout:
						return fmt.Errorf("%s %s the accept, with Pongs to every Ping", describe(ev, 0), fmtOffset(ev.at.Sub(sent)))
					}
					break
				}
				pings := s.w.Pings()
				if len(pings) < 2 {
					return fmt.Errorf("%d Ping in two intervals (%s)", len(pings), interval.Round(10*time.Millisecond))
				}
				for i := 1; i < len(pings); i++ {
					if gap := pings[i].Sub(pings[i-1]); gap < interval/2 || gap > interval+time.Second {
						return fmt.Errorf("Pings %d and %d are %s apart; the first came %s after the accept", i, i+1, gap.Round(10*time.Millisecond), interval.Round(10*time.Millisecond))
					}
				}
				s.w.reportPings = false
				s.summary = fmt.Sprintf("open; %d Pings, interval %s", len(pings), interval.Round(10*time.Millisecond))
				return nil
			}})
	}
	return cs
}

// firstPing waits for the client's first Ping after the accept sent at
// sent, and returns the Ping interval it shows. It skips the case when no
// Ping comes within --ping-wait.
func (s *csess) firstPing(sent time.Time) (time.Duration, bool) {
	for {
		ev := s.w.next(sent.Add(s.p.pingWait))
		switch {
		case ev.kind == evPing:
			return ev.at.Sub(sent), true
		case ev.kind == evMessage && ev.op == opBinary:
			continue
		case ev.kind == evTimeout:
			s.r.skip(fmt.Sprintf("no Ping within --ping-wait %s of the accept: the client pings less often, or cannot (a browser page)", s.p.pingWait))
		default:
			s.judge(false, "no Ping: "+describe(ev, s.p.pingWait))
		}
		return 0, false
	}
}

package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/vectors"
	"github.com/wsproof/wsproof/protocol"
)

// TestLiveVectors replays every server-role vector over real sockets: each
// case answers the challenge the server really sent, breaking the rule its
// vector breaks, and the server must close with that vector's code and the
// spec's fixed reason (or accept, for valid cases).
// live is a pair of servers (ws and wss) configured as the vectors assume,
// with a clock that starts at the vectors' fixed time and can be pushed
// ahead.
type live struct {
	lf      *vectors.LiveFixture
	urls    map[bool]string
	dialers map[bool]*websocket.Dialer
	offset  atomic.Int64
	start   time.Time
}

func (l *live) clock() time.Time {
	return time.Unix(vectors.Now, 0).Add(time.Since(l.start) + time.Duration(l.offset.Load()))
}

func newLive(t *testing.T, diagnostic bool) *live {
	t.Helper()
	lf, err := vectors.Live()
	if err != nil {
		t.Fatal(err)
	}
	l := &live{lf: lf, urls: map[bool]string{}, dialers: map[bool]*websocket.Dialer{}, start: time.Now()}
	for _, tlsOn := range []bool{false, true} {
		srv, err := New(&Config{
			Identity: lf.Identity, Keys: lf.Keys, Registry: lf.Registry, RequiredGroups: lf.RequiredGroups,
			Handler: echo{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			HandshakeRatePerAddr: 1000, HandshakeRate: 1000,
			TokenLifetime: 2 * time.Second, RefreshBefore: time.Second, // a re-challenge within 1 s of the accept
			// The handshake deadline is a timed row applied before the
			// response (spec section "State machines", Time): it must come
			// after the late responses' clock, or they would meet it
			// rather than the challenge's expiry.
			HandshakeTimeout: time.Minute,
			Time:             l.clock,
			// Diagnostic reasons name the exact code (spec section
			// "Diagnostic reasons"), so that a case passes only for the
			// failure its vector breaks.
			DiagnosticReasons: diagnostic,
		})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewUnstartedServer(srv)
		d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}}
		if tlsOn {
			hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
			hs.StartTLS()
			l.urls[true] = "wss" + strings.TrimPrefix(hs.URL, "https")
			d.TLSClientConfig = &tls.Config{RootCAs: certPool(hs), MinVersion: tls.VersionTLS13}
		} else {
			hs.Start()
			l.urls[false] = "ws" + strings.TrimPrefix(hs.URL, "http")
		}
		l.dialers[tlsOn] = &d
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			hs.Close()
		})
	}
	return l
}

// replay runs one live case and returns how the server answered: the
// accept message, or the close error.
func (l *live) replay(t *testing.T, c vectors.LiveCase) ([]byte, *websocket.CloseError) {
	t.Helper()
	l.offset.Store(0)
	ws, _, err := l.dialers[c.TLS].Dial(l.urls[c.TLS], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var exporter []byte
	if tc, ok := ws.UnderlyingConn().(*tls.Conn); ok {
		st := tc.ConnectionState()
		exporter, _ = st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, challenge, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if c.SessionKID != "" {
		challenge = authenticate(t, ws, l.lf, c.SessionKID, challenge, exporter, l.clock)
	}
	l.offset.Store(int64(c.Late))
	if err := ws.WriteMessage(websocket.TextMessage, c.Build(challenge, exporter)); err != nil {
		t.Fatal(err)
	}
	mt, msg, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return nil, ce
	}
	if err != nil || mt != websocket.TextMessage {
		t.Fatalf("neither an accept nor a close: type %d, %v", mt, err)
	}
	return msg, nil
}

// TestLiveVectors replays every server-role vector over real sockets: each
// case answers the challenge the server really sent, breaking the rule its
// vector breaks, and the server, in diagnostic mode, must close with that
// vector's exact code (or accept, for valid cases).
func TestLiveVectors(t *testing.T) {
	l := newLive(t, true)
	lf := l.lf
	if len(lf.Cases) < 40 {
		t.Fatalf("only %d live cases", len(lf.Cases))
	}
	for _, c := range lf.Cases {
		t.Run(c.ID, func(t *testing.T) {
			accept, ce := l.replay(t, c)
			switch {
			case c.Code == "" && ce == nil && strings.HasPrefix(string(accept), `{"token":`):
			case c.Code == "":
				t.Fatalf("valid case refused: %v", ce)
			case ce == nil:
				t.Fatalf("want close %s, got an accept", c.Code)
			default:
				code := protocol.Code(c.Code)
				if got, exact := protocol.CodeOfClose(ce.Code, ce.Text); got != code || !exact {
					t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Text, code.CloseCode(), code.DiagnosticReason())
				}
			}
		})
	}
}

// authenticate completes a handshake as kid and returns the re-challenge
// that follows it.
func authenticate(t *testing.T, ws *websocket.Conn, lf *vectors.LiveFixture, kid string, challenge, exporter []byte, now func() time.Time) []byte {
	t.Helper()
	e, _ := lf.Registry.Lookup(kid)
	pc, err := protocol.NewClient(&protocol.ClientConfig{KeyID: kid, Signer: lf.Clients[kid], Algorithm: e.Algorithm,
		ServerKeys: lf.Keys.Public(), ServerIdentity: lf.Identity})
	if err != nil {
		t.Fatal(err)
	}
	h := pc.Handshake()
	resp, err := h.ReadChallenge(challenge, rand.Reader, now(), exporter)
	if err != nil {
		t.Fatal(err)
	}
	ws.WriteMessage(websocket.TextMessage, resp)
	if _, accept, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	} else if _, err := h.ReadAccept(accept, now()); err != nil {
		t.Fatal(err)
	}
	_, rechallenge, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return rechallenge
}

// TestUniformDenials: the Close frame a peer receives is byte for byte the
// same for an unknown key, a bad signature, an expired challenge and a
// missing group (spec section "Uniform denials and kid enumeration").
func TestUniformDenials(t *testing.T) {
	l := newLive(t, false)
	want := map[string]bool{"response-unknown-key": true, "response-signature-flipped": true,
		"response-challenge-expired": true, "response-missing-group": true}
	var frames [][]byte
	for _, c := range l.lf.Cases {
		if !want[c.ID] {
			continue
		}
		_, ce := l.replay(t, c)
		if ce == nil {
			t.Fatalf("%s accepted", c.ID)
		}
		frames = append(frames, websocket.FormatCloseMessage(ce.Code, ce.Text))
	}
	if len(frames) != len(want) {
		t.Fatalf("found %d of the %d cases", len(frames), len(want))
	}
	for _, f := range frames[1:] {
		if !bytes.Equal(f, frames[0]) {
			t.Fatalf("denials differ on the wire: %q vs %q", f, frames[0])
		}
	}
}

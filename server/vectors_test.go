package server

import (
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
func TestLiveVectors(t *testing.T) {
	lf, err := vectors.Live()
	if err != nil {
		t.Fatal(err)
	}
	var offset atomic.Int64 // the server's clock runs this far ahead
	// The registry's validity windows are relative to the vectors' fixed
	// clock, so the server's time starts there.
	start := time.Now()
	clock := func() time.Time {
		return time.Unix(vectors.Now, 0).Add(time.Since(start) + time.Duration(offset.Load()))
	}
	urls := map[bool]string{}
	for _, tlsOn := range []bool{false, true} {
		srv, err := New(&Config{
			Identity: lf.Identity, Keys: lf.Keys, Registry: lf.Registry, RequiredGroups: lf.RequiredGroups,
			Handler: echo{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			HandshakeRatePerAddr: 1000, HandshakeRate: 1000,
			TokenLifetime: 3 * time.Second, RefreshBefore: 2 * time.Second, // a re-challenge 1 s after the accept
			Time: clock,
		})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewUnstartedServer(srv)
		if tlsOn {
			hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
			hs.StartTLS()
			urls[true] = "wss" + strings.TrimPrefix(hs.URL, "https")
		} else {
			hs.Start()
			urls[false] = "ws" + strings.TrimPrefix(hs.URL, "http")
		}
		d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}}
		if tlsOn {
			d.TLSClientConfig = &tls.Config{RootCAs: certPool(hs), MinVersion: tls.VersionTLS13}
		}
		dialers[tlsOn] = d
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			hs.Close()
		})
	}
	if len(lf.Cases) < 40 {
		t.Fatalf("only %d live cases", len(lf.Cases))
	}
	for _, c := range lf.Cases {
		t.Run(c.ID, func(t *testing.T) {
			offset.Store(0)
			d := dialers[c.TLS]
			ws, _, err := d.Dial(urls[c.TLS], nil)
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
				challenge = authenticate(t, ws, lf, c.SessionKID, challenge, exporter, clock)
			}
			offset.Store(int64(c.Late))
			if err := ws.WriteMessage(websocket.TextMessage, c.Build(challenge, exporter)); err != nil {
				t.Fatal(err)
			}
			mt, msg, err := ws.ReadMessage()
			var ce *websocket.CloseError
			switch {
			case c.Code == "" && err == nil && mt == websocket.TextMessage && strings.HasPrefix(string(msg), `{"token":`):
			case c.Code == "":
				t.Fatalf("valid case refused: %v", err)
			case errors.As(err, &ce):
				code := protocol.Code(c.Code)
				if ce.Code != code.CloseCode() || ce.Text != code.Reason() {
					t.Fatalf("closed with %d %q, want %d %q (%s)", ce.Code, ce.Text, code.CloseCode(), code.Reason(), c.Code)
				}
			default:
				t.Fatalf("want close %s, got message type %d, err %v", c.Code, mt, err)
			}
		})
	}
}

var dialers = map[bool]websocket.Dialer{}

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

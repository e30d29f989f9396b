package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// session is a rawClient that answers re-challenges on its own reader
// goroutine, as a real client does, while the test keeps sending.
type session struct {
	*rawClient
	wmu       sync.Mutex
	refreshes int
	got       chan []byte
	closed    chan *websocket.CloseError
}

func (c *rawClient) run(t *testing.T) *session {
	s := &session{rawClient: c, got: make(chan []byte, 1024), closed: make(chan *websocket.CloseError, 1)}
	go func() {
		var h *protocol.ClientHandshake
		for {
			mt, msg, err := c.ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				errors.As(err, &ce)
				s.closed <- ce
				close(s.got)
				return
			}
			if mt == websocket.BinaryMessage {
				s.got <- msg
				continue
			}
			if h == nil { // a re-challenge
				h = c.client.Refresh(c.sess)
				resp, err := h.ReadChallenge(msg, rand.Reader, time.Now(), c.exporter)
				if err != nil {
					t.Errorf("client refused a re-challenge: %v", err)
					return
				}
				s.write(websocket.TextMessage, resp)
				continue
			}
			sess, err := h.ReadAccept(msg, time.Now())
			if err != nil {
				t.Errorf("client refused an accept: %v", err)
				return
			}
			c.sess, h = sess, nil
			s.wmu.Lock()
			s.refreshes++
			s.wmu.Unlock()
		}
	}()
	return s
}

func (s *session) write(mt int, msg []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.ws.WriteMessage(mt, msg)
}

// TestRefreshUnderTraffic sends numbered messages without pause across
// several refreshes and checks that every echo comes back, in order.
func TestRefreshUnderTraffic(t *testing.T) {
	f := newFixture(t, true, func(c *Config) {
		c.TokenLifetime = 2 * time.Second
		c.RefreshBefore = time.Second // a refresh every second: at most half the lifetime
	})
	c, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, c, "c-ES256", nil); err != nil {
		t.Fatal(err)
	}
	s := c.run(t)
	const n = 3000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], uint64(i))
			if err := s.write(websocket.BinaryMessage, b[:]); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
			if i%100 == 0 {
				time.Sleep(150 * time.Millisecond) // spread the traffic over ~4.5 s
			}
		}
	}()
	for i := range n {
		select {
		case msg, ok := <-s.got:
			if !ok {
				t.Fatalf("socket closed after %d echoes: %v", i, <-s.closed)
			}
			if got := binary.BigEndian.Uint64(msg); got != uint64(i) {
				t.Fatalf("echo %d carries %d: lost or reordered", i, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stalled after %d echoes", i)
		}
	}
	<-done
	s.wmu.Lock()
	refreshes := s.refreshes
	s.wmu.Unlock()
	if refreshes < 3 {
		t.Fatalf("%d refreshes during the run, want at least 3", refreshes)
	}
	t.Logf("%d messages echoed across %d refreshes, none lost or reordered", n, refreshes)
}

// TestExpiryWithoutRefresh: a client that ignores re-challenges is closed
// with token_expired when its token runs out.
func TestExpiryWithoutRefresh(t *testing.T) {
	f := newFixture(t, false, func(c *Config) {
		c.TokenLifetime = time.Second
		c.RefreshBefore = 500 * time.Millisecond
	})
	c, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, c, "c-EdDSA", nil); err != nil {
		t.Fatal(err)
	}
	if code, _ := closeCode(t, c.ws); code != protocol.CodeTokenExpired.CloseCode() {
		t.Fatalf("close code %d, want token_expired", code)
	}
}

// TestRevocationByFileEdit revokes a key by rewriting the registry file and
// measures how long its live socket survives.
func TestRevocationByFileEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.jwks")
	var reg *keys.FileRegistry
	f := newFixture(t, false, func(c *Config) {
		entries := c.Registry.(*keys.Set).Entries()
		data, err := keys.MarshalRegistry(entries)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, data)
		if reg, err = keys.OpenFile(path); err != nil {
			t.Fatal(err)
		}
		c.Registry = reg
	})
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	defer func() { cancel(); <-watchDone }()
	go func() {
		defer close(watchDone)
		reg.Watch(ctx, 0, func(_, _ *keys.Set) { f.srv.Recheck() }, nil)
	}()

	victim, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, victim, "c-ES256", nil); err != nil {
		t.Fatal(err)
	}
	bystander, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.handshake(t, bystander, "c-EdDSA", nil); err != nil {
		t.Fatal(err)
	}

	var entries []*keys.Entry
	for _, e := range reg.Current().Entries() {
		c := *e
		if c.KeyID == "c-ES256" {
			c.Revoked = true
		}
		entries = append(entries, &c)
	}
	data, err := keys.MarshalRegistry(entries)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	writeFile(t, path, data)
	code, reason := closeCode(t, victim.ws)
	took := time.Since(start)
	if code != protocol.CodeSessionRevoked.CloseCode() || reason != protocol.CodeSessionRevoked.Reason() {
		t.Fatalf("closed with %d %q, want session_revoked", code, reason)
	}
	t.Logf("revoked socket closed %v after the registry file changed", took)
	if took >= time.Second {
		t.Fatalf("revocation took %v, the spec allows one second", took)
	}
	// The other session is untouched.
	bystander.ws.WriteMessage(websocket.BinaryMessage, []byte("still here"))
	bystander.ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, msg, err := bystander.ws.ReadMessage(); err != nil || string(msg) != "still here" {
		t.Fatalf("bystander: %q %v", msg, err)
	}
	// And the revoked key cannot come back.
	again, _, err := f.dial(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.handshake(t, again, "c-ES256", nil)
	if code, _ := closeCode(t, again.ws); code != protocol.CodeKeyRevoked.CloseCode() {
		t.Fatalf("revoked key reconnected: close %d", code)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRelayDefeatedByChannelBinding puts a relay between client and server
// that terminates TLS on each side (a client that trusts the relay's
// certificate, as after a mis-issued certificate or a phishing host). The
// relay forwards every message faithfully, yet the server refuses: the
// client's tls-exporter value is that of its connection to the relay.
func TestRelayDefeatedByChannelBinding(t *testing.T) {
	f := newFixture(t, true, nil)
	up := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol},
		TLSClientConfig: &tls.Config{RootCAs: certPool(f.http), MinVersion: tls.VersionTLS13}}
	var relayWG sync.WaitGroup
	relay := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		relayWG.Add(1)
		defer relayWG.Done()
		server, _, err := up.Dial(f.url, nil)
		if err != nil {
			return
		}
		defer server.Close()
		u := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
		client, err := u.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer client.Close()
		pipe := func(dst, src *websocket.Conn) {
			for {
				mt, msg, err := src.ReadMessage()
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					dst.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ce.Text))
					return
				}
				if err != nil || dst.WriteMessage(mt, msg) != nil {
					return
				}
			}
		}
		go pipe(server, client)
		pipe(client, server)
	}))
	relay.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	relay.StartTLS()
	defer func() { relay.CloseClientConnections(); relay.Close(); relayWG.Wait() }()

	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol},
		TLSClientConfig: &tls.Config{RootCAs: certPool(relay), MinVersion: tls.VersionTLS13}}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(relay.URL, "https"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	st := ws.UnderlyingConn().(*tls.Conn).ConnectionState()
	exporter, _ := st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
	c := &rawClient{ws: ws, exporter: exporter}
	f.handshake(t, c, "c-ES256", nil)
	code, reason := closeCode(t, ws)
	if code != protocol.CodeChannelBindingMismatch.CloseCode() || reason != protocol.CodeChannelBindingMismatch.Reason() {
		t.Fatalf("relayed handshake closed with %d %q, want channel_binding_mismatch's 4003", code, reason)
	}
}

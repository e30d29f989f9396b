package conformance_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/server"
)

// The lines another implementation copies into its own tests: describe the
// server it started (in diagnostic mode, with a client key registered in
// the groups it requires) and run the suite, one subtest per case. Here the
// server is this module's, started by startServer below.
func TestExampleServer(t *testing.T) {
	url, serverKeys, clientKey := startServer(t)
	rep := conformance.TestServer(t, &conformance.ServerTarget{
		URL:        url,
		Identity:   "wss://example.test/ws",
		ServerKeys: serverKeys,
		Key:        clientKey,
		Diagnostic: true,
		// The server's deadlines, when shorter than the defaults (10 s).
		HandshakeTimeout: 2 * time.Second,
		HeaderTimeout:    time.Second,
	})
	if rep.Failed > 0 {
		t.Errorf("%d cases failed", rep.Failed)
	}
}

// RunServer is the suite without package testing: here three cases, by id.
func ExampleRunServer() {
	url, serverKeys, clientKey := startServer(nil)
	rep, err := conformance.RunServer(context.Background(), &conformance.ServerTarget{
		URL: url, Identity: "wss://example.test/ws", ServerKeys: serverKeys, Key: clientKey, Diagnostic: true,
	}, &conformance.Options{Select: func(id string) bool {
		return id == "handshake-valid" || id == "response-alg-none" || id == "response-unknown-key"
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range rep.Cases {
		fmt.Println(c.Result, c.ID, c.Expected)
	}
	// Output:
	// pass handshake-valid a challenge that verifies, then accept
	// pass response-alg-none close 4004 "algorithm not allowed" (alg_not_allowed)
	// pass response-unknown-key close 4003 "authentication failed" (unknown_key)
}

// startServer starts this module's server in diagnostic mode with one
// registered client key, and returns its URL, its public keys and the
// client key. It stops with t, or with the process when t is nil.
func startServer(t *testing.T) (string, *keys.PublicSet, conformance.Key) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	srvSigner, err := keys.Generate(keys.ES256, nil)
	must(err)
	clientSigner, err := keys.Generate(keys.EdDSA, nil)
	must(err)
	secret := make([]byte, keys.TokenKeySize)
	rand.Read(secret)
	sk := &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "server-1", Algorithm: keys.ES256, Signer: srvSigner}},
		Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: secret}},
	}
	reg, err := keys.NewSet([]*keys.Entry{{KeyID: "device-1", Key: clientSigner.Public(), Algorithm: keys.EdDSA,
		Subject: "device:example", Groups: []string{"devices"}}})
	must(err)
	srv, err := server.New(&server.Config{Identity: "wss://example.test/ws", Keys: sk, Registry: reg, RequiredGroups: []string{"devices"},
		Handler: server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
			for { // the application reads until the session ends
				if _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}), DiagnosticReasons: true,
		HandshakeRate: 1000, HandshakeRatePerAddr: 1000, MaxPendingPerAddr: 64, HandshakeTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(err)
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.ReadHeaderTimeout = time.Second
	hs.Start()
	if t != nil {
		t.Cleanup(hs.Close)
	}
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", sk.Public(), conformance.Key{ID: "device-1", Alg: keys.EdDSA, Signer: clientSigner}
}

package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/keys"
)

// TestConformance runs the client suite of package conformance against
// this package's client, in diagnostic mode, so that every negative case
// checks the exact spec code: over ws://, and over wss:// with a throwaway
// CA, where every challenge demands tls-exporter binding and the TLS cases
// run. The client sends an application message as soon as it is
// connected, and another after each message it receives, as a chatty
// application does: no case may depend on its silence. With a Ping every
// second and a Ping wait of 3 s the keepalive cases run too. Every case of
// each run must pass, none is skipped, and every case of the table runs in
// one of the two.
func TestConformance(t *testing.T) {
	signer, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, caPEM, err := conformance.ThrowawayTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	connect := func(ctx context.Context, url string, pinned *keys.PublicSet, identity string) error {
		conn, err := Dial(ctx, url, &Config{KeyID: "conformance-go-client", Signer: signer, ServerKeys: pinned,
			ServerIdentity: identity, HandshakeTimeout: 2 * time.Second, PingInterval: time.Second, DiagnosticReasons: true,
			TLSConfig: &tls.Config{RootCAs: roots}})
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.Write(ctx, []byte("hello from the client")); err != nil {
			return err
		}
		for {
			if _, err := conn.Read(ctx); err != nil {
				var ce *CloseError
				if errors.As(err, &ce) && ce.Code == 1000 {
					return nil
				}
				return err
			}
			conn.Write(ctx, []byte("and another"))
		}
	}
	ran := map[string]bool{}
	for _, tlsConf := range []*tls.Config{nil, serverTLS} {
		name := map[bool]string{false: "ws", true: "wss"}[tlsConf != nil]
		t.Run(name, func(t *testing.T) {
			rep := conformance.TestClient(t, &conformance.ClientTarget{Connect: connect, Diagnostic: true, TLSConfig: tlsConf,
				CaseTimeout: 2 * time.Second, HandshakeWait: 5 * time.Second, PingWait: 3 * time.Second})
			if rep.Failed > 0 || rep.Skipped > 0 {
				t.Errorf("%d of %d cases passed, %d failed, %d skipped; want every case of the run to pass",
					rep.Passed, len(rep.Cases), rep.Failed, rep.Skipped)
			}
			for _, c := range rep.Cases {
				ran[c.ID] = ran[c.ID] || c.Result == conformance.Pass
			}
		})
	}
	for _, c := range conformance.ClientCases() {
		if !ran[c.ID] {
			t.Errorf("%s passed in no run", c.ID)
		}
	}
}

package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/keys"
)

// TestConformance runs the client suite of package conformance against
// this package's client, in diagnostic mode, so that every negative case
// checks the exact spec code. The client sends an application message as
// soon as it is connected, and another after each message it receives, as
// a chatty application does: no case may depend on its silence. With a
// Ping every second and a Ping wait of 3 s the keepalive cases run too.
// Every case must pass: none is skipped.
func TestConformance(t *testing.T) {
	signer, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(ctx context.Context, url string, pinned *keys.PublicSet, identity string) error {
		conn, err := Dial(ctx, url, &Config{KeyID: "conformance-go-client", Signer: signer, ServerKeys: pinned,
			ServerIdentity: identity, HandshakeTimeout: 2 * time.Second, PingInterval: time.Second, DiagnosticReasons: true})
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
	rep := conformance.TestClient(t, &conformance.ClientTarget{Connect: connect, Diagnostic: true,
		CaseTimeout: 2 * time.Second, HandshakeWait: 5 * time.Second, PingWait: 3 * time.Second})
	if rep.Failed > 0 || rep.Skipped > 0 || rep.Passed != len(conformance.ClientCases()) {
		t.Errorf("%d of %d cases passed, %d failed, %d skipped; want every case of the table to pass",
			rep.Passed, len(conformance.ClientCases()), rep.Failed, rep.Skipped)
	}
}

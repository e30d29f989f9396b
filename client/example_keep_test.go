package client_test

import (
	"context"
	"crypto"
	"log"
	"os/signal"
	"syscall"
	"time"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/keys"
)

// ExampleKeep keeps a device connected until it is told to stop: it
// reconnects with backoff when the server restarts or the network fails, and
// stops for good when the server refuses the key.
func ExampleKeep() {
	var (
		deviceKey  crypto.Signer   // for example from a TPM
		serverKeys *keys.PublicSet // for example keys.ParsePublicSet of the pinned JWK Set
		readings   <-chan []byte   // what the device reports
	)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	// The server identity is the URL's, and over TLS the session is bound
	// to the TLS connection: both are the defaults.
	cfg := &client.Config{
		KeyID:      "sensor-7",
		Signer:     deviceKey,
		ServerKeys: serverKeys,
	}
	err := client.Keep(ctx, "wss://plant-3.example/ws", cfg, &client.Backoff{Max: time.Minute},
		func(ctx context.Context, c *client.Conn) error {
			// Commands from the server arrive on Read; reading also keeps
			// the socket's Pings and re-challenges answered.
			failed := make(chan error, 1)
			go func() {
				for {
					cmd, err := c.Read(ctx)
					if err != nil {
						failed <- err
						return
					}
					log.Printf("command of %d bytes", len(cmd))
				}
			}()
			for {
				select {
				case r := <-readings:
					if err := c.Write(ctx, r); err != nil {
						return err
					}
				case err := <-failed:
					return err
				}
			}
		})
	log.Println("stopped:", err)
}

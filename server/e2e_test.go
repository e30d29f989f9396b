package server

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The tests in this file run our client package against our server: the two
// halves of the implementation that ship to users.

func (f *fixture) clientConfig(kid string) *client.Config {
	cfg := &client.Config{KeyID: kid, Signer: f.signers[kid], Algorithm: f.entries[kid].Algorithm,
		ServerKeys: f.sk.Public(), ServerIdentity: identity}
	if f.http.TLS != nil {
		cfg.TLSConfig = &tls.Config{RootCAs: certPool(f.http), MinVersion: tls.VersionTLS13}
	}
	return cfg
}

func TestClientEveryAlgorithmOverTLS(t *testing.T) {
	f := newFixture(t, true, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, alg := range keys.Algorithms {
		c, err := client.Dial(ctx, f.url, f.clientConfig("c-"+string(alg)))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if s := c.Session(); !s.ChannelBound || s.Subject != "sub-c-"+string(alg) {
			t.Fatalf("%s: session %+v", alg, s)
		}
		if err := c.Write(ctx, []byte(alg)); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Read(ctx); err != nil || string(got) != string(alg) {
			t.Fatalf("%s: echo %q %v", alg, got, err)
		}
		c.Close()
	}
}

func TestClientRefreshUnderTraffic(t *testing.T) {
	f := newFixture(t, true, func(c *Config) {
		c.TokenLifetime = 2 * time.Second
		c.RefreshBefore = time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, f.url, f.clientConfig("c-EdDSA"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := c.Session().Token
	const n = 5000
	go func() {
		for i := range n {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], uint64(i))
			if c.Write(ctx, b[:]) != nil {
				return
			}
			if i%200 == 0 {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	for i := range n {
		msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d echoes: %v", i, err)
		}
		if got := binary.BigEndian.Uint64(msg); got != uint64(i) {
			t.Fatalf("echo %d carries %d", i, got)
		}
	}
	if c.Session().Token == first {
		t.Fatal("no refresh happened during the run")
	}
}

func TestClientSeesRevocation(t *testing.T) {
	var revoked atomic.Bool
	f := newFixture(t, false, func(c *Config) {
		c.Authorize = func(e *keys.Entry) error {
			if revoked.Load() && e.KeyID == "c-ES256" {
				return errors.New("withdrawn by test")
			}
			return nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, f.url, f.clientConfig("c-ES256"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	revoked.Store(true)
	if n := f.srv.Recheck(); n != 1 {
		t.Fatalf("Recheck closed %d sockets, want 1", n)
	}
	_, err = c.Read(ctx)
	var ce *client.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CodeSessionRevoked.CloseCode() || ce.Retryable() {
		t.Fatalf("Read after revocation: %v", err)
	}
}

// outageRegistry is a registry whose availability the test switches, as a
// database-backed registry's does when its grace period ends.
type outageRegistry struct {
	keys.Registry
	down atomic.Bool
}

func (r *outageRegistry) Check() error {
	if r.down.Load() {
		return keys.ErrUnavailable
	}
	return nil
}

func TestRegistryOutageIsRetryable(t *testing.T) {
	var reg *outageRegistry
	f := newFixture(t, false, func(c *Config) {
		reg = &outageRegistry{Registry: c.Registry}
		c.Registry = reg
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, f.url, f.clientConfig("c-ES256"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg.down.Store(true)
	if n := f.srv.Recheck(); n != 1 {
		t.Fatalf("Recheck closed %d sockets, want 1", n)
	}
	_, err = c.Read(ctx)
	var ce *client.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CodeInternalError.CloseCode() || !ce.Retryable() {
		t.Fatalf("Read after the registry went down: %v", err)
	}
	_, err = client.Dial(ctx, f.url, f.clientConfig("c-ES256"))
	if !errors.As(err, &ce) || ce.Code != protocol.CodeInternalError.CloseCode() {
		t.Fatalf("Dial while the registry is down: %v", err)
	}
	reg.down.Store(false)
	c2, err := client.Dial(ctx, f.url, f.clientConfig("c-ES256"))
	if err != nil {
		t.Fatalf("Dial after the registry came back: %v", err)
	}
	c2.Close()
}

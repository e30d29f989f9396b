// Package keystoretest checks a crypto.Signer adapter for a key store (an
// ssh-agent, a PKCS #11 token, a TPM) the way wsproof uses it: signatures
// made through keys.Sign must verify with keys.Verify, and must not verify
// over another message, with a flipped bit or under another key; and the
// adapter must complete a real handshake, over TLS with channel binding,
// against package server, while the same handshake with another key enrolled
// under its key id is refused.
package keystoretest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/internal/pgtest"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/server"
)

// Need returns the path of the program name, for a test that needs it
// (ssh-agent, softhsm2-util, swtpm). Without it the test is skipped, or
// fails where the environment requires every service (bash .ci/run sets
// WSPROOF_REQUIRE_SERVICES=1), naming the Debian package that brings it.
func Need(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s is not installed: apt-get install %s (bash .ci/run does)", name, pkg)
	if pgtest.Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// CheckSigner signs with s as alg through keys.Sign, from several
// goroutines at once, and checks each signature with keys.Verify. It also
// checks that each one fails over another message, with one bit flipped,
// and under another key of the same algorithm, so that a signer that
// returns something unrelated to its key cannot pass.
func CheckSigner(t testing.TB, s crypto.Signer, alg keys.Algorithm) {
	t.Helper()
	other, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- checkOne(s, other.Public(), alg, fmt.Appendf(nil, "eyJhbGciOiJ9.%d", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
	}
}

func checkOne(s crypto.Signer, other crypto.PublicKey, alg keys.Algorithm, msg []byte) error {
	sig, err := keys.Sign(rand.Reader, s, alg, msg)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if err := keys.Verify(s.Public(), alg, msg, sig); err != nil {
		return fmt.Errorf("the signature does not verify: %w", err)
	}
	if keys.Verify(s.Public(), alg, append(bytes.Clone(msg), 'x'), sig) == nil {
		return errors.New("the signature verifies over another message")
	}
	bad := bytes.Clone(sig)
	bad[len(bad)/2] ^= 1
	if keys.Verify(s.Public(), alg, msg, bad) == nil {
		return errors.New("the signature verifies with a bit flipped")
	}
	if keys.Verify(other, alg, msg, sig) == nil {
		return errors.New("the signature verifies under another key")
	}
	return nil
}

const identity = "wss://wsproof.test/ws"

// Handshake enrolls s's public key with alg under a key id on a real
// server (package server over TLS 1.3, on a loopback port), dials it with
// package client using s, and checks the session and an echo. Then it
// enrolls another key under the same key id and checks that the same
// client is refused (4003).
func Handshake(t testing.TB, s crypto.Signer, alg keys.Algorithm) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	url, pool, pinned := serve(t, s.Public(), alg)
	cfg := &client.Config{KeyID: "hw-key", Signer: s, Algorithm: alg, ServerKeys: pinned,
		ServerIdentity: identity, TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}
	c, err := client.Dial(ctx, url, cfg)
	if err != nil {
		t.Fatalf("%s: handshake: %v", alg, err)
	}
	if sess := c.Session(); sess.Subject != "hardware" || !sess.ChannelBound {
		t.Fatalf("%s: session %+v", alg, sess)
	}
	if err := c.Write(ctx, []byte(alg)); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Read(ctx); err != nil || string(got) != string(alg) {
		t.Fatalf("%s: echo %q, %v", alg, got, err)
	}
	c.Close()

	other, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	url, pool, pinned = serve(t, other.Public(), alg)
	cfg.ServerKeys, cfg.TLSConfig.RootCAs = pinned, pool
	_, err = client.Dial(ctx, url, cfg)
	var ce *client.CloseError
	if !errors.As(err, &ce) || ce.Code != 4003 {
		t.Fatalf("%s: with another key enrolled, Dial returned %v; want a close with 4003", alg, err)
	}
}

type echo struct{}

func (echo) ServeSession(ctx context.Context, c *server.Conn) {
	for {
		m, err := c.Read(ctx)
		if err != nil || c.Send(ctx, m.Data) != nil {
			return
		}
	}
}

// serve starts a server whose registry holds pub under "hw-key", and
// returns its URL, the CA pool that trusts it and its public signing keys.
func serve(t testing.TB, pub crypto.PublicKey, alg keys.Algorithm) (string, *x509.CertPool, *keys.PublicSet) {
	t.Helper()
	sk, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, keys.TokenKeySize)
	rand.Read(secret)
	serverKeys := &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "server", Algorithm: keys.ES256, Signer: sk}},
		Token:   []keys.TokenKey{{KeyID: "token", Algorithm: keys.TokenDir, Secret: secret}},
	}
	reg, err := keys.NewSet([]*keys.Entry{{KeyID: "hw-key", Key: pub, Algorithm: alg, Subject: "hardware"}})
	if err != nil {
		t.Fatalf("%s: enroll: %v", alg, err)
	}
	srv, err := server.New(&server.Config{Identity: identity, Keys: serverKeys, Registry: reg, Handler: echo{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	hs.StartTLS()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	})
	pool := x509.NewCertPool()
	pool.AddCert(hs.Certificate())
	return "wss" + strings.TrimPrefix(hs.URL, "https"), pool, serverKeys.Public()
}

package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/keys"
)

const conformanceIdentity = "wss://wsproof.test/ws"

// expiringAfter is when, in seconds after the suite starts, the validity
// of the fixture Expiring ends.
const expiringAfter = 20

// TestConformance runs the server suite of package conformance against
// this package's Server over real sockets, in diagnostic mode, so that
// every negative case checks the exact spec code: over ws:// with ES256
// client keys and every algorithm offered, and over wss://, where
// tls-exporter channel binding is in force, with a PS256 client key and
// four algorithms offered. Every case must pass in one of the two runs,
// and none may fail; a case skipped in one run must name the reason that
// run cannot provide (a transport, an algorithm).
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	reps := map[string]*conformance.Report{}
	// The group returns when both parallel runs have.
	t.Run("suite", func(t *testing.T) {
		for _, tlsOn := range []bool{false, true} {
			name := map[bool]string{false: "ws", true: "wss"}[tlsOn]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				accepted, algs := keys.ES256, []keys.Algorithm(nil)
				if tlsOn {
					accepted, algs = keys.PS256, []keys.Algorithm{keys.PS256, keys.RS256, keys.ES256, keys.EdDSA}
				}
				rep := conformance.TestServer(t, startConformanceTarget(t, accepted, tlsOn, algs))
				mu.Lock()
				reps[name] = rep
				mu.Unlock()
			})
		}
	})
	t.Run("every case passed somewhere", func(t *testing.T) {
		passed := map[string]bool{}
		for _, rep := range reps {
			if rep.Failed > 0 {
				t.Errorf("%s: %d cases failed", rep.Target, rep.Failed)
			}
			for _, c := range rep.Cases {
				passed[c.ID] = passed[c.ID] || c.Result == conformance.Pass
				if c.CodeNotChecked != "" {
					t.Errorf("%s: the exact code was not checked in diagnostic mode", c.ID)
				}
			}
		}
		for _, c := range conformance.ServerCases() {
			if !passed[c.ID] {
				t.Errorf("%s passed in no run", c.ID)
			}
		}
	})
}

// startConformanceTarget serves a Server on httptest with deadlines short
// enough for the timing cases: a 5 s handshake deadline, 3 s challenges
// (shorter than the deadline, so that challenge expiry can be tested), 6 s
// tokens (a re-challenge 3 s after the accept), a Ping every second (so a
// keepalive timeout of 2 s, well before the token ends) and a 1 s
// ReadHeaderTimeout. The registry holds the accepted key and every fixture
// of conformance.Fixtures: a denied key (in no required group), a revoked
// one, one not yet valid, one expired, one that requires channel binding,
// one whose validity ends expiringAfter seconds after the start, and
// registered RS256, PS256 and ES256 keys for the algorithm cases.
func startConformanceTarget(t *testing.T, acceptedAlg keys.Algorithm, tlsOn bool, algs []keys.Algorithm) *conformance.ServerTarget {
	t.Helper()
	gen := func(alg keys.Algorithm, kid string) conformance.Key {
		s, err := keys.Generate(alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return conformance.Key{ID: kid, Alg: alg, Signer: s}
	}
	accepted, srvKey := gen(acceptedAlg, "probe-accepted"), gen(keys.ES256, "server-1")
	fx := conformance.Fixtures{
		Denied: new(gen(keys.ES256, "probe-denied")), Revoked: new(gen(keys.EdDSA, "probe-revoked")),
		NotYetValid: new(gen(keys.EdDSA, "probe-not-yet-valid")), Expired: new(gen(keys.EdDSA, "probe-expired")),
		CBRequired: new(gen(keys.ES256, "probe-cb-required")), Expiring: new(gen(keys.ES256, "probe-expiring")),
		Registered: []conformance.Key{gen(keys.RS256, "probe-rs256"), gen(keys.PS256, "probe-ps256"), gen(keys.ES256, "probe-es256")},
	}
	secret := make([]byte, keys.TokenKeySize)
	rand.Read(secret)
	sk := &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: srvKey.ID, Algorithm: srvKey.Alg, Signer: srvKey.Signer}},
		Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: secret}},
	}
	entry := func(k *conformance.Key, groups ...string) *keys.Entry {
		return &keys.Entry{KeyID: k.ID, Key: k.Signer.Public(), Algorithm: k.Alg, Subject: "probe:" + k.ID, Groups: groups}
	}
	now := time.Now()
	entries := []*keys.Entry{entry(&accepted, "devices"), entry(fx.Denied, "visitors"), entry(fx.CBRequired, "devices")}
	revoked, notYet, expired := entry(fx.Revoked, "devices"), entry(fx.NotYetValid, "devices"), entry(fx.Expired, "devices")
	expiring := entry(fx.Expiring, "devices")
	revoked.Revoked = true
	// The final-token cases, slow ones that run among the first, follow
	// the expiring key's session through a few refreshes to its end, on a
	// whole second as token exps are.
	expiring.NotAfter = time.Unix(now.Unix()+expiringAfter, 0)
	notYet.NotBefore = now.Add(time.Hour)
	expired.NotBefore, expired.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	entries[2].RequireChannelBinding = true
	entries = append(entries, revoked, notYet, expired, expiring)
	for i := range fx.Registered {
		entries = append(entries, entry(&fx.Registered[i], "devices"))
	}
	reg, err := keys.NewSet(entries)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(&Config{
		Identity: conformanceIdentity, Keys: sk, Registry: reg, RequiredGroups: []string{"devices"}, Algorithms: algs,
		Handler:           echo{},
		Origins:           []string{"https://app.example"},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		DiagnosticReasons: true,
		HandshakeRate:     1000, HandshakeRatePerAddr: 1000, MaxPendingPerAddr: 64,
		HandshakeTimeout: 5 * time.Second, ChallengeLifetime: 3 * time.Second,
		TokenLifetime: 6 * time.Second, RefreshBefore: 3 * time.Second, PingInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.ReadHeaderTimeout = time.Second
	hs.Config.MaxHeaderBytes = 8 << 10
	target := &conformance.ServerTarget{Identity: conformanceIdentity, ServerKeys: sk.Public(), Key: accepted, Fixtures: fx,
		Diagnostic: true, Origin: "https://app.example",
		HandshakeTimeout: 5 * time.Second, HeaderTimeout: 2 * time.Second, RefreshWait: 6 * time.Second, PingWait: 3 * time.Second}
	if tlsOn {
		hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
		hs.StartTLS()
		target.URL = "wss" + strings.TrimPrefix(hs.URL, "https") + "/ws"
		target.TLSConfig = &tls.Config{RootCAs: certPool(hs)}
	} else {
		hs.Start()
		target.URL = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	})
	return target
}

package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/server"
)

// probeFixture is a server's keys and registry: an accepted key in the
// required group and a registered key outside it, written to files as the
// probe reads them.
type probeFixture struct {
	dir        string
	serverKeys *keys.ServerKeys
	registry   *keys.Set
	keyFile    string
	deniedFile string
	pubFile    string
}

const probeIdentity = "wss://wsproof.test/ws"

func newProbeFixture(t *testing.T, acceptedAlg, deniedAlg keys.Algorithm) *probeFixture {
	t.Helper()
	dir := t.TempDir()
	gen := func(alg keys.Algorithm) crypto.Signer {
		s, err := keys.Generate(alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	accepted, denied, srvKey := gen(acceptedAlg), gen(deniedAlg), gen(keys.ES256)
	secret := make([]byte, keys.TokenKeySize)
	rand.Read(secret)
	f := &probeFixture{dir: dir}
	f.serverKeys = &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "server-1", Algorithm: keys.ES256, Signer: srvKey}},
		Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: secret}},
	}
	reg, err := keys.NewSet([]*keys.Entry{
		{KeyID: "probe-accepted", Key: accepted.Public(), Algorithm: acceptedAlg, Subject: "probe:accepted", Groups: []string{"devices"}},
		{KeyID: "probe-denied", Key: denied.Public(), Algorithm: deniedAlg, Subject: "probe:denied", Groups: []string{"visitors"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.registry = reg
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, k := range []struct {
		s    crypto.Signer
		name string
		path *string
	}{{accepted, "accepted.pem", &f.keyFile}, {denied, "denied.pem", &f.deniedFile}} {
		pemData, err := keys.MarshalPrivatePEM(k.s)
		if err != nil {
			t.Fatal(err)
		}
		*k.path = write(k.name, pemData)
	}
	pub, err := keys.MarshalPublicSet(f.serverKeys.Public())
	if err != nil {
		t.Fatal(err)
	}
	f.pubFile = write("server.pub.jwks", pub)
	return f
}

// startProbeTarget serves our server on httptest, with deadlines short
// enough for the timing cases: a 5 s handshake deadline, 3 s challenges
// (shorter than the deadline, so that challenge expiry can be tested), 6 s
// tokens (a re-challenge 3 s after the accept), a Ping every second (so a
// keepalive timeout of 2 s, well before the token ends) and a 1 s
// ReadHeaderTimeout.
// algs, when set, is the list of algorithms the server accepts.
func startProbeTarget(t *testing.T, f *probeFixture, tlsOn bool, algs []keys.Algorithm) (url, caFile string) {
	t.Helper()
	srv, err := server.New(&server.Config{
		Identity: probeIdentity, Keys: f.serverKeys, Registry: f.registry, RequiredGroups: []string{"devices"},
		Algorithms: algs,
		Handler: server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
			for {
				m, err := c.Read(ctx)
				if err != nil {
					return
				}
				c.Send(ctx, m.Data)
			}
		}),
		Origins:          []string{"https://app.example"},
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		HandshakeRate:    1000,
		HandshakeTimeout: 5 * time.Second, ChallengeLifetime: 3 * time.Second,
		TokenLifetime: 6 * time.Second, RefreshBefore: 3 * time.Second, PingInterval: time.Second,
		HandshakeRatePerAddr: 1000, MaxPendingPerAddr: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.ReadHeaderTimeout = time.Second
	hs.Config.MaxHeaderBytes = 8 << 10
	if tlsOn {
		hs.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
		hs.StartTLS()
		caFile = filepath.Join(f.dir, "ca.pem")
		if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		url = "wss" + strings.TrimPrefix(hs.URL, "https") + "/ws"
	} else {
		hs.Start()
		url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	})
	return url, caFile
}

// runProbe runs "wsproof args..." in process and returns its exit code,
// output and JSON report.
func runProbe(t *testing.T, args ...string) (int, string, *conformance.Report) {
	t.Helper()
	code, out, rep, err := probeRun(t.TempDir(), args...)
	if err != nil {
		t.Fatalf("%v (exit %d):\n%s", err, code, out)
	}
	return code, out, rep
}

// keepReports returns the arguments that also write a run's reports to
// $WSPROOF_PROBE_REPORTS/NAME.json and .html, for CI to archive, or none
// when the variable is not set.
func keepReports(name string) []string {
	dir := os.Getenv("WSPROOF_PROBE_REPORTS")
	if dir == "" {
		return nil
	}
	os.MkdirAll(dir, 0o755)
	return []string{"--html", filepath.Join(dir, name+".html"), "--keep-json", filepath.Join(dir, name+".json")}
}

// probeRun is runProbe for any goroutine: it writes the report in dir.
func probeRun(dir string, args ...string) (int, string, *conformance.Report, error) {
	report := filepath.Join(dir, "report.json")
	if i := slices.Index(args, "--keep-json"); i >= 0 {
		defer func(keep string) {
			if data, err := os.ReadFile(report); err == nil {
				os.WriteFile(keep, data, 0o644)
			}
		}(args[i+1])
		args = slices.Delete(slices.Clone(args), i, i+2)
	}
	var stdout, stderr bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	code := c.run(context.Background(), append(args, "--json", report))
	out := stdout.String() + stderr.String()
	data, err := os.ReadFile(report)
	if err != nil {
		return code, out, nil, fmt.Errorf("no report: %w", err)
	}
	var rep conformance.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return code, out, nil, err
	}
	return code, out, &rep, nil
}

// knownDeviations are the probe cases our implementation fails today, each
// with the reason; see the probe's report to the maintainers. A case listed
// here that starts to pass fails the test, so that the list stays true.
var knownDeviations = map[string]string{}

// checkReport fails the test for every failed case not in knownDeviations,
// and for every skipped case not in skips.
func checkReport(t *testing.T, rep *conformance.Report, out string, skips map[string]bool) {
	t.Helper()
	for _, c := range rep.Cases {
		_, known := knownDeviations[c.ID]
		switch {
		case known && c.Result == conformance.Pass:
			t.Errorf("%s passes now: remove it from knownDeviations", c.ID)
		case known:
			t.Logf("known deviation %s: expected %s; got %s", c.ID, c.Expected, c.Got)
		case c.Result == conformance.Fail:
			t.Errorf("%s (%s): expected %s; got %s; %s", c.ID, c.Section, c.Expected, c.Got, c.Note)
		case c.Result == conformance.Skip && !skips[c.ID]:
			t.Errorf("%s skipped: %s", c.ID, c.Note)
		case c.Result == conformance.Pass && skips[c.ID]:
			t.Errorf("%s ran; expected it to be skipped", c.ID)
		}
	}
	if t.Failed() {
		t.Logf("probe output:\n%s", out)
	}
}

// exitFor is the exit status a probe run must have: 1 when a case failed.
func exitFor(rep *conformance.Report) int {
	if rep.Failed > 0 {
		return 1
	}
	return 0
}

// TestProbeServer runs "probe server" against our server: over ws:// with
// ES256 client keys and every algorithm offered, and over wss://, where
// tls-exporter channel binding is in force, with a PS256 client key, an
// ES256 denied key and four algorithms offered. Every case must pass, and
// only the cases that do not apply may be skipped.
func TestProbeServer(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "ws", true: "wss"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			accepted, algs := keys.ES256, []keys.Algorithm(nil)
			if tlsOn {
				accepted, algs = keys.PS256, []keys.Algorithm{keys.PS256, keys.RS256, keys.ES256, keys.EdDSA}
			}
			f := newProbeFixture(t, accepted, keys.ES256)
			url, ca := startProbeTarget(t, f, tlsOn, algs)
			args := []string{"probe", "server", url, "--key", f.keyFile, "--kid", "probe-accepted", "--alg", string(accepted),
				"--denied-key", f.deniedFile, "--denied-kid", "probe-denied",
				"--server-keys", f.pubFile, "--identity", probeIdentity, "--origin", "https://app.example",
				"--handshake-timeout", "5s", "--header-timeout", "2s", "--refresh-wait", "6s", "--ping-wait", "3s",
				"--parallel", "8", "--rate", "0"}
			if ca != "" {
				args = append(args, "--ca", ca)
			}
			args = append(args, keepReports("probe-server-"+name)...)
			code, out, rep := runProbe(t, args...)
			skips := map[string]bool{}
			if tlsOn {
				skips["response-cb-unexpected"], skips["response-der-signature"] = true, true
			} else {
				skips["response-cb-missing"], skips["response-cb-wrong"] = true, true
				skips["response-ps256-salt-0"], skips["response-ps256-salt-64"] = true, true
				skips["response-alg-not-offered"] = true
			}
			checkReport(t, rep, out, skips)
			if want := exitFor(rep); code != want && !t.Failed() {
				t.Errorf("exit status %d, want %d:\n%s", code, want, out)
			}
			if len(rep.Cases) < 90 {
				t.Errorf("only %d cases", len(rep.Cases))
			}
		})
	}
}

// TestProbeClient runs "probe client --run-go-client": our Go client must
// refuse every bad challenge with the case's code, and pass every control.
func TestProbeClient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	html := filepath.Join(dir, "report.html")
	args := []string{"probe", "client", "--run-go-client", "--ping-wait", "3s", "--case-timeout", "2s", "--state", dir, "--html", html}
	if keep := keepReports("probe-client-go"); keep != nil {
		args = append(args[:len(args)-2], keep...)
		html = keep[1]
	}
	code, out, rep := runProbe(t, args...)
	checkReport(t, rep, out, nil)
	if want := exitFor(rep); code != want && !t.Failed() {
		t.Errorf("exit status %d, want %d:\n%s", code, want, out)
	}
	if len(rep.Cases) < 60 {
		t.Errorf("only %d cases", len(rep.Cases))
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<style>", "challenge-impostor-key", "Client: verifying a challenge, step 6"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "<link", "http://", "https://"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("the HTML report is not self-contained: it has %q", bad)
		}
	}
}

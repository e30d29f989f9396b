package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/internal/pgtest"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/keys/postgres"
	"github.com/wsproof/wsproof/protocol"
)

// TestFleet runs fleet mode (issue 7) for real, on loopback: a PostgreSQL
// server, two "wsproof serve" nodes that share it and one server key file,
// and HAProxy in front of them. Clients connect through the balancer only.
// It shows that a revocation in the database closes the key's sockets on
// both nodes within one second, that the clients of a stopped node
// reconnect through the balancer to the other node and authenticate afresh,
// and that a database outage behaves as spec section "Availability" says.
//
// PostgreSQL and HAProxy come from Debian packages, which bash .ci/run
// installs. Without them the test is skipped, unless
// WSPROOF_REQUIRE_SERVICES=1 (set by .ci/run), which makes their absence a
// failure. Set WSPROOF_FLEET_REPORT=FILE to have the measured times appended
// to FILE as well as logged.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("fleet test starts PostgreSQL, HAProxy and two nodes")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if pgtest.Required() {
			t.Fatal("haproxy is not installed: apt-get install haproxy (bash .ci/run does)")
		}
		t.Skip("haproxy is not installed: apt-get install haproxy (bash .ci/run does)")
	}
	db := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	report := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		t.Log(line)
		if f := os.Getenv("WSPROOF_FLEET_REPORT"); f != "" {
			if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintln(fh, "fleet: "+line)
				fh.Close()
			}
		}
	}

	// The registry of record, through the command line.
	run(t, "db", "migrate", "--db", db.URL())
	run(t, "db", "migrate", "--db", db.URL()) // idempotent
	signers := map[string]keyAndAlg{}
	for i, alg := range []keys.Algorithm{keys.EdDSA, keys.ES256, keys.ES384, keys.EdDSA} {
		kid := fmt.Sprintf("k%d", i)
		s, err := keys.Generate(alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		pem, err := keys.MarshalPrivatePEM(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path(kid+".pem"), pem, 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, "keys", "add", "--db", db.URL(), "--key", path(kid+".pem"), "--kid", kid, "--sub", "device-"+kid, "--groups", "devices")
		signers[kid] = keyAndAlg{s, alg}
	}
	// An authorized_keys file imports in one transaction; a second import
	// skips what is enrolled.
	var ak []byte
	for i := range 2 {
		s, _ := keys.Generate(keys.EdDSA, nil)
		line, err := keys.MarshalAuthorizedKey(s.Public(), fmt.Sprintf("imported-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ak = append(ak, line...)
	}
	if err := os.WriteFile(path("authorized_keys"), ak, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "keys", "import", "--db", db.URL(), "--authorized-keys", path("authorized_keys"), "--groups", "visitors"); !strings.Contains(out, "imported 2 of 2") {
		t.Fatalf("keys import --db: %s", out)
	}
	if out := run(t, "keys", "import", "--db", db.URL(), "--authorized-keys", path("authorized_keys")); !strings.Contains(out, "imported 0 of 2") {
		t.Fatalf("second keys import --db: %s", out)
	}
	if out := run(t, "keys", "list", "--db", db.URL()); strings.Count(out, "device-k") != 4 || strings.Count(out, "imported-") != 2 {
		t.Fatalf("keys list --db:\n%s", out)
	}
	// The nodes connect with the least privilege docs/fleet.md recommends:
	// they read the registry and listen, and cannot change it.
	nodeURL := strings.Replace(db.URL(), "postgres@", "wsproof_node@", 1)
	func() {
		conn, err := pgx.Connect(ctx, db.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, nodeRoleSQL); err != nil {
			t.Fatal(err)
		}
		node, err := pgx.Connect(ctx, nodeURL)
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close(ctx)
		if _, err := node.Exec(ctx, "UPDATE wsproof_keys SET revoked = true"); err == nil {
			t.Fatal("the node role can write the registry")
		}
	}()
	stranger, _ := keys.Generate(keys.EdDSA, nil) // never enrolled

	// One server key file for both nodes, as a fleet shares it.
	sk, err := generateServerKeys()
	if err != nil {
		t.Fatal(err)
	}
	skData, _ := keys.MarshalServerKeys(sk)
	if err := os.WriteFile(path("server.jwks"), skData, 0o600); err != nil {
		t.Fatal(err)
	}
	// Step 1 of a rotation (docs/fleet.md), done ahead: a second signing key
	// is published, not yet used, and every client and backend pins both.
	out := run(t, "server-keys", "add", "--signing", "--alg", "EdDSA", "--file", path("server.jwks"))
	next := regexp.MustCompile(`added signing key (\S+) `).FindStringSubmatch(out)
	if next == nil {
		t.Fatalf("server-keys add: %s", out)
	}
	run(t, "server-keys", "public", "--file", path("server.jwks"), "--out", path("server.pub.jwks"))
	pubData, _ := os.ReadFile(path("server.pub.jwks"))
	pinned, err := keys.ParsePublicSet(pubData)
	if err != nil || len(pinned.Keys()) != 2 {
		t.Fatalf("published set: %v", err)
	}

	lbPort := freePort(t)
	identity := fmt.Sprintf("ws://127.0.0.1:%d/ws", lbPort)
	const grace = 4 * time.Second
	start := func(name string) *fleetNode {
		return startNode(t, name, path(name+".addr"), true,
			"serve", "--db", nodeURL, "--db-grace", grace.String(), "--server-keys", path("server.jwks"),
			"--state", path("state-"+name), "--listen", "127.0.0.1:0", "--addr-file", path(name+".addr"),
			"--identity", identity, "--trusted-proxy", "127.0.0.1",
			"--token-lifetime", "1m", "--refresh-before", "20s")
	}
	nodeA, nodeB := start("a"), start("b")
	startHAProxy(t, haproxy, path("haproxy.cfg"), lbPort, nodeA.addr, nodeB.addr)
	lb := fmt.Sprintf("http://127.0.0.1:%d", lbPort)
	waitHTTP(t, lb+"/healthz", 200, "ok")

	// Eight clients, two per key, each from its own loopback address, opened
	// one after another so that round robin alternates between the nodes.
	cfgFor := func(kid string, src int) *client.Config {
		ka := signers[kid]
		return &client.Config{
			KeyID: kid, Signer: ka.s, Algorithm: ka.alg, ServerKeys: pinned, ServerIdentity: identity,
			NetDialContext: sourceDialer(src),
		}
	}
	var clients []*fleetClient
	for i := range 8 {
		c := keepClient(ctx, t, fmt.Sprintf("k%d", i/2), cfgFor(fmt.Sprintf("k%d", i/2), 10+i), "ws"+strings.TrimPrefix(lb, "http")+"/ws")
		clients = append(clients, c)
		c.waitSession(t, 10*time.Second)
	}
	where := func(c *fleetClient) *fleetNode {
		t.Helper()
		sid := c.conn.Load().Session().SocketID
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			for _, n := range []*fleetNode{nodeA, nodeB} {
				if strings.Contains(n.log.String(), "sid="+sid) {
					return n
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("socket %s is in neither node's log", sid)
		return nil
	}
	onA := map[*fleetClient]bool{}
	for i, c := range clients {
		n := where(c)
		onA[c] = n == nodeA
		// The node saw the client's own address through X-Forwarded-For.
		if want := fmt.Sprintf("remote=127.0.0.%d", 10+i); !strings.Contains(n.log.String(), want) {
			t.Errorf("node %s did not log the client address %s", n.name, want)
		}
	}
	if onA[clients[0]] == onA[clients[1]] {
		t.Fatalf("both k0 clients are on one node; the balancer did not alternate")
	}

	// A token minted by a node opens in a backend that holds only the token
	// keys and the public key set, bound to its socket.
	run(t, "server-keys", "token-keys", "--file", path("server.jwks"), "--out", path("backend.jwks"))
	tkData, _ := os.ReadFile(path("backend.jwks"))
	tks, err := keys.ParseTokenKeys(tkData)
	if err != nil {
		t.Fatal(err)
	}
	backend := &protocol.TokenVerifier{Identity: identity, TokenKeys: tks, SigningKeys: pinned}
	for _, c := range clients[:2] {
		s := c.conn.Load().Session()
		claims, err := backend.Open(s.Token, s.SocketID, time.Now())
		if err != nil || claims.Subject != "device-k0" {
			t.Fatalf("backend Open of a token from node: %+v %v", claims, err)
		}
		if _, err := backend.Open(s.Token, "another-socket", time.Now()); protocol.CodeOf(err) != protocol.CodeSocketMismatch {
			t.Fatalf("token opened for another socket: %v", err)
		}
	}

	// 1. Revocation in the database closes the key's sockets on both nodes.
	admin, err := postgres.Connect(ctx, db.URL())
	if err != nil {
		t.Fatal(err)
	}
	revokeAt := time.Now()
	if err := admin.Revoke(ctx, "k0", "fleet-test"); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	admin.Close(ctx)
	var worst time.Duration
	for _, c := range clients[:2] {
		err, at := c.waitDone(t, 5*time.Second)
		var ce *client.CloseError
		if !errors.As(err, &ce) || ce.Code != protocol.CodeSessionRevoked.CloseCode() {
			t.Fatalf("k0 client ended with %v, want close %d", err, protocol.CodeSessionRevoked.CloseCode())
		}
		worst = max(worst, at.Sub(committed))
	}
	report("revocation: k0's sockets on both nodes closed %v after the commit (%v after the revoke began); limit 1s",
		worst.Round(time.Millisecond), time.Since(revokeAt).Round(time.Millisecond))
	if worst >= time.Second {
		t.Fatalf("revocation took %v, limit 1s", worst)
	}
	for range 2 { // round robin: one attempt per node
		if _, err := client.Dial(ctx, "ws"+strings.TrimPrefix(lb, "http")+"/ws", cfgFor("k0", 30)); !isAuthFailure(err) {
			t.Fatalf("revoked key dialled: %v", err)
		}
	}
	for _, c := range clients[2:] {
		c.echo(ctx, t)
	}

	// Steps 2 and 3 of the rotation: switch to the published key. Both nodes
	// pick the file up without a restart; a client that pinned only the old
	// key is now refused by both, and the sessions opened before the switch
	// are untouched.
	run(t, "server-keys", "promote", next[1], "--file", path("server.jwks"))
	switched := time.Now()
	for _, n := range []*fleetNode{nodeA, nodeB} {
		waitHTTP(t, "http://"+n.addr+"/server.pub.jwks", 200, `{"keys":[`+"\n"+`{"alg":"EdDSA"`)
	}
	report("rotation: both nodes signed with the new key %v after the switch was written", time.Since(switched).Round(time.Millisecond))
	oldOnly := &protocol.TokenVerifier{Identity: identity, TokenKeys: tks, SigningKeys: sk.Public()}
	for i := range 2 { // round robin: one dial per node
		old := cfgFor("k1", 40+i)
		old.ServerKeys = sk.Public()
		if _, err := client.Dial(ctx, "ws"+strings.TrimPrefix(lb, "http")+"/ws", old); err == nil {
			t.Fatal("a client pinning only the old key accepted a node after the switch")
		}
		c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(lb, "http")+"/ws", cfgFor("k1", 42+i))
		if err != nil {
			t.Fatalf("client pinning the published set: %v", err)
		}
		s := c.Session()
		if _, err := backend.Open(s.Token, s.SocketID, time.Now()); err != nil {
			t.Fatalf("token signed with the new key: %v", err)
		}
		if _, err := oldOnly.Open(s.Token, s.SocketID, time.Now()); protocol.CodeOf(err) != protocol.CodeTokenInvalid {
			t.Fatalf("a backend without the new public key opened its token: %v", err)
		}
		c.Close()
	}
	for _, c := range clients[2:] {
		c.echo(ctx, t)
	}

	// 2. Stopping node A moves its clients, through the balancer, to B.
	var movers []*fleetClient
	for _, c := range clients[2:] {
		if onA[c] {
			movers = append(movers, c)
			c.sessions.Store(0)
		}
	}
	stopAt := time.Now()
	nodeA.stop(t)
	for _, c := range movers {
		c.waitSession(t, 15*time.Second)
		if n := where(c); n != nodeB {
			t.Fatalf("client %s reconnected to node %s", c.kid, n.name)
		}
		c.echo(ctx, t)
	}
	report("failover: %d clients of the stopped node authenticated afresh on the other through the balancer within %v",
		len(movers), time.Since(stopAt).Round(time.Millisecond))
	live := clients[2:]

	// 3. Database outage: known keys keep working for the grace period,
	// unknown ones do not; then everyone is refused with a retryable code;
	// when the database is back, clients return on their own.
	for _, c := range live {
		c.sessions.Store(0)
	}
	db.Stop(t)
	outage := time.Now()
	waitHTTP(t, "http://"+nodeB.addr+"/healthz", 200, "degraded: ")
	waitMetric(t, "http://"+nodeB.addr+"/metrics", "wsproof_registry_db_up 0")
	if time.Since(outage) < grace {
		for _, c := range live {
			c.echo(ctx, t)
		}
		c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(lb, "http")+"/ws", cfgFor("k1", 31))
		if err != nil {
			t.Fatalf("known key refused during the grace period: %v", err)
		}
		c.Close()
		strangerCfg := &client.Config{KeyID: "stranger", Signer: stranger, Algorithm: keys.EdDSA, ServerKeys: pinned, ServerIdentity: identity}
		if _, err := client.Dial(ctx, "ws"+strings.TrimPrefix(lb, "http")+"/ws", strangerCfg); !isAuthFailure(err) {
			t.Fatalf("unknown key during the outage: %v", err)
		}
	} else {
		t.Fatalf("the node took %v to report the outage, longer than the %v grace period", time.Since(outage), grace)
	}
	for _, c := range live {
		c.waitClose(t, grace+5*time.Second, protocol.CodeInternalError.CloseCode())
	}
	report("outage: the node served known keys for the %v grace period (from its last contact), then closed its %d sockets with retryable %d after %v",
		grace, len(live), protocol.CodeInternalError.CloseCode(), time.Since(outage).Round(time.Millisecond))
	waitHTTP(t, "http://"+nodeB.addr+"/healthz", 503, "unavailable: ")
	if c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(lb, "http")+"/ws", cfgFor("k1", 32)); err == nil {
		c.Close()
		t.Fatal("a key was accepted while the registry was unavailable")
	}
	db.Restart(t)
	back := time.Now()
	for _, c := range live {
		c.waitSession(t, 20*time.Second)
		c.echo(ctx, t)
	}
	waitMetric(t, "http://"+nodeB.addr+"/metrics", "wsproof_registry_db_up 1")
	waitMetric(t, "http://"+nodeB.addr+"/metrics", "wsproof_registry_db_reconnects_total 1")
	waitHTTP(t, "http://"+nodeB.addr+"/healthz", 200, "ok")
	report("recovery: all %d clients authenticated again %v after the database restarted",
		len(live), time.Since(back).Round(time.Millisecond))
	// The node listens again: a revocation, this time with the command,
	// still arrives within a second of the command's return.
	out = run(t, "keys", "revoke", "--db", db.URL(), "k1")
	committed = time.Now()
	if !strings.Contains(out, "revoked k1") {
		t.Fatalf("keys revoke --db: %s", out)
	}
	for _, c := range live {
		if c.kid != "k1" {
			continue
		}
		err, at := c.waitDone(t, 5*time.Second)
		var ce *client.CloseError
		if !errors.As(err, &ce) || ce.Code != protocol.CodeSessionRevoked.CloseCode() {
			t.Fatalf("k1 client ended with %v", err)
		}
		if d := at.Sub(committed); d >= time.Second {
			t.Fatalf("revocation after recovery took %v", d)
		}
	}
	audit := run(t, "db", "audit", "--db", db.URL())
	for _, re := range []string{`(?m)\sfleet-test\s+postgres\s+update\s+k0$`, `(?m)\stester\s+postgres\s+update\s+k1$`, `(?m)\stester\s+postgres\s+insert\s+k3$`} {
		if !regexp.MustCompile(re).MatchString(audit) {
			t.Errorf("db audit lacks %s:\n%s", re, audit)
		}
	}
	nodeB.stop(t)
	for _, n := range []*fleetNode{nodeA, nodeB} {
		if strings.Contains(n.log.String(), "panic") {
			t.Errorf("node %s panicked:\n%s", n.name, n.log.String())
		}
	}
}

// nodeRoleSQL is the node role of docs/fleet.md, word for word.
const nodeRoleSQL = `CREATE ROLE wsproof_node LOGIN;
GRANT SELECT ON wsproof_keys, wsproof_schema TO wsproof_node;`

type keyAndAlg struct {
	s   crypto.Signer
	alg keys.Algorithm
}

// run runs the wsproof command (this test binary, through testscript's
// PATH) and returns its standard output; it fails the test on failure.
func run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("wsproof", args...)
	cmd.Env = append(os.Environ(), "USER=tester", "GORACE=atexit_sleep_ms=0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("wsproof %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// syncBuffer is a bytes.Buffer for a child's output, read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fleetNode is one "wsproof serve" process.
type fleetNode struct {
	name string
	addr string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

// startNode starts "wsproof ARGS..." and waits for its address file and,
// unless plain is false, for "ok" on its /healthz over plain HTTP.
func startNode(t *testing.T, name, addrFile string, plain bool, args ...string) *fleetNode {
	t.Helper()
	n := &fleetNode{name: name, log: &syncBuffer{}, done: make(chan error, 1)}
	n.cmd = exec.Command("wsproof", args...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- n.cmd.Wait() }()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.done
		if t.Failed() {
			t.Logf("node %s log:\n%s", name, n.log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			n.addr = strings.TrimSpace(string(b))
			break
		}
		select {
		case <-n.done:
			n.done <- nil
			t.Fatalf("node %s exited:\n%s", name, n.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not start:\n%s", name, n.log.String())
		}
	}
	if plain {
		waitHTTP(t, "http://"+n.addr+"/healthz", 200, "ok")
	}
	return n
}

// stop stops the node as an orchestrator does, with SIGTERM, and waits.
func (n *fleetNode) stop(t *testing.T) {
	t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		n.done <- nil // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatalf("node %s did not stop", n.name)
	}
}

// TestProxyProtocolTLS puts HAProxy in TCP mode (layer 4, TLS passed
// through) in front of a node that serves TLS 1.3 with --proxy-protocol:
// channel binding survives the balancer, the node sees each client's own
// address in the PROXY v2 header, a trusted peer without a header is
// refused, and an untrusted peer cannot claim an address with one.
func TestProxyProtocolTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts HAProxy and a node")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if pgtest.Required() {
			t.Fatal("haproxy is not installed: apt-get install haproxy (bash .ci/run does)")
		}
		t.Skip("haproxy is not installed: apt-get install haproxy (bash .ci/run does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	signer, _ := keys.Generate(keys.EdDSA, nil)
	pem, _ := keys.MarshalPrivatePEM(signer)
	if err := os.WriteFile(filepath.Join(dir, "dev.pem"), pem, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "keys", "add", "--state", state, "--key", filepath.Join(dir, "dev.pem"), "--kid", "dev", "--sub", "sensor")
	lbPort := freePort(t)
	identity := fmt.Sprintf("wss://127.0.0.1:%d/ws", lbPort)
	node := startNode(t, "tls", filepath.Join(dir, "addr"), false,
		"serve", "--state", state, "--tls-dev", "--listen", "127.0.0.1:0", "--addr-file", filepath.Join(dir, "addr"),
		"--identity", identity, "--trusted-proxy", "127.0.0.1", "--proxy-protocol")
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	cfg := fmt.Sprintf(`defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend tls
    bind 127.0.0.1:%d
    default_backend nodes
backend nodes
    option httpchk GET /healthz
    http-check expect status 200
    server a %s send-proxy-v2 check check-ssl check-send-proxy verify none inter 200ms
`, lbPort, node.addr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startHAProxyConfig(t, haproxy, cfgPath)

	certPEM, err := os.ReadFile(filepath.Join(state, devCertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	pubData, _ := os.ReadFile(filepath.Join(state, serverPubFile))
	pinned, err := keys.ParsePublicSet(pubData)
	if err != nil {
		t.Fatal(err)
	}
	// The node's identity is the balancer's URL: a client that dials the
	// node directly (below) must be told so, since by default it expects
	// the URL it dials. Channel binding is required over TLS by default.
	cfgFrom := func(src int) *client.Config {
		return &client.Config{KeyID: "dev", Signer: signer, Algorithm: keys.EdDSA, ServerKeys: pinned,
			ServerIdentity: identity,
			TLSConfig:      &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13},
			NetDialContext: sourceDialer(src)}
	}
	var c *client.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err = client.Dial(ctx, identity, cfgFrom(50)); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("through the balancer: %v", err)
	}
	if !c.Session().ChannelBound {
		t.Fatal("no channel binding through a TCP balancer")
	}
	c.Close()
	// The room logs the session on its own goroutine, after the accept.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(node.log.String(), "remote=127.0.0.50"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the node did not see the client's address:\n%s", node.log.String())
		}
	}
	// The balancer's health checks (docs/fleet.md's configuration) speak
	// the PROXY protocol and TLS and reach /healthz: over five check
	// intervals, and before this test makes any connection fail on
	// purpose, the node logs no refused connection.
	time.Sleep(time.Second)
	if n := strings.Count(node.log.String(), "handshake error"); n != 0 {
		t.Fatalf("%d health checks from the balancer failed:\n%s", n, node.log.String())
	}
	direct := "wss://" + node.addr + "/ws"
	if _, err := client.Dial(ctx, direct, cfgFrom(1)); err == nil {
		t.Fatal("a trusted peer without a PROXY header was served")
	}
	c, err = client.Dial(ctx, direct, cfgFrom(2))
	if err != nil {
		t.Fatalf("an untrusted peer without a header: %v", err)
	}
	c.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}, Timeout: 5 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", node.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(raw, "PROXY TCP4 203.0.113.9 127.0.0.1 4000 443\r\n")
	tc := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	if err := tc.Handshake(); err == nil {
		t.Fatal("an untrusted peer's PROXY header was accepted")
	}
	if strings.Contains(node.log.String(), "203.0.113.9") {
		t.Fatal("the node used an address an untrusted peer claimed")
	}
}

// startHAProxy runs HAProxy in the foreground in front of the two nodes: HTTP
// mode (it understands the WebSocket upgrade), round robin, health checks
// on /healthz every 200 ms, X-Forwarded-For, and redispatch to the other
// node when a connection to one fails.
func startHAProxy(t *testing.T, bin, cfgPath string, port int, a, b string) {
	t.Helper()
	cfg := fmt.Sprintf(`global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    option forwardfor
    option redispatch
    retries 3
frontend wsproof
    bind 127.0.0.1:%d
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 2
    server a %s check
    server b %s check
`, port, a, b)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startHAProxyConfig(t, bin, cfgPath)
}

// startHAProxyConfig runs HAProxy in the foreground with the configuration at
// cfgPath until the test ends.
func startHAProxyConfig(t *testing.T, bin, cfgPath string) {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.Command(bin, "-db", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("haproxy log:\n%s", log.String())
		}
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitHTTP waits up to 20 s for url to answer status with a body starting
// with prefix.
func waitHTTP(t *testing.T, url string, status int, prefix string) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second}
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := hc.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == status && strings.HasPrefix(string(body), prefix) {
			return
		}
		last = fmt.Sprintf("%d %q", resp.StatusCode, body)
	}
	t.Fatalf("%s never answered %d %q; last: %s", url, status, prefix, last)
}

// waitMetric waits up to 20 s for a line of the Prometheus text at url.
func waitMetric(t *testing.T, url, line string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if slices.Contains(strings.Split(string(body), "\n"), line) {
			return
		}
		last = string(body)
	}
	t.Fatalf("%s never showed %q; last:\n%s", url, line, last)
}

// sourceDialer dials from 127.0.0.n, so that each client has its own address.
func sourceDialer(n int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))}}
	return d.DialContext
}

func isAuthFailure(err error) bool {
	var ce *client.CloseError
	return errors.As(err, &ce) && ce.Code == 4003
}

// fleetClient is one device: client.Keep with a short backoff, recording
// each session and how each connection ended.
type fleetClient struct {
	kid      string
	conn     atomic.Pointer[client.Conn]
	sessions atomic.Int32
	msgs     chan []byte
	mu       sync.Mutex
	closes   []int // close codes, in order
	done     chan struct{}
	err      error
	doneAt   time.Time
}

func keepClient(ctx context.Context, t *testing.T, kid string, cfg *client.Config, url string) *fleetClient {
	c := &fleetClient{kid: kid, msgs: make(chan []byte, 16), done: make(chan struct{})}
	kctx, cancel := context.WithCancel(ctx)
	go func() {
		err := client.Keep(kctx, url, cfg, &client.Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
			func(ctx context.Context, conn *client.Conn) error {
				c.conn.Store(conn)
				c.sessions.Add(1)
				for {
					m, err := conn.Read(ctx)
					if err != nil {
						var ce *client.CloseError
						code := 0
						if errors.As(err, &ce) {
							code = ce.Code
						}
						c.mu.Lock()
						c.closes = append(c.closes, code)
						c.mu.Unlock()
						return err
					}
					select {
					case c.msgs <- m:
					default:
					}
				}
			})
		c.err, c.doneAt = err, time.Now()
		close(c.done)
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func (c *fleetClient) waitSession(t *testing.T, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); c.sessions.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("client %s: no session within %v (closes %v)", c.kid, d, c.closes)
		}
		select {
		case <-c.done:
			t.Fatalf("client %s gave up: %v", c.kid, c.err)
		default:
		}
	}
}

func (c *fleetClient) waitClose(t *testing.T, d time.Duration, code int) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		got := slices.Contains(c.closes, code)
		closes := slices.Clone(c.closes)
		c.mu.Unlock()
		if got {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client %s: no close %d within %v (closes %v)", c.kid, code, d, closes)
		}
	}
}

// waitDone waits for Keep to give up and returns its error and when.
func (c *fleetClient) waitDone(t *testing.T, d time.Duration) (error, time.Time) {
	t.Helper()
	select {
	case <-c.done:
		return c.err, c.doneAt
	case <-time.After(d):
		t.Fatalf("client %s still connected after %v", c.kid, d)
		return nil, time.Time{}
	}
}

// echo sends one message on the current connection and waits for the echo.
func (c *fleetClient) echo(ctx context.Context, t *testing.T) {
	t.Helper()
	msg := "ping-" + strconv.Itoa(int(time.Now().UnixNano()%1e6))
	if err := c.conn.Load().Write(ctx, []byte(msg)); err != nil {
		t.Fatalf("client %s: write: %v", c.kid, err)
	}
	for {
		select {
		case m := <-c.msgs:
			if string(m) == "echo: "+msg {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("client %s: no echo", c.kid)
		}
	}
}

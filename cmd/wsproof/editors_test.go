package main

import (
	"bufio"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/internal/configmap"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The tests in this file measure what issue 17 asks of a registry file, with
// real processes: "wsproof keys" editors that run at once, editors killed
// with SIGKILL in the middle of a write, a ConfigMap-style swap of the
// mount, and a "wsproof serve" process that watches the file meanwhile.

// stepsEnv, set in an editor's environment, makes it report each step of
// its edit on standard error ("step NAME") and wait, before going on, for a
// byte on standard input: the test that drives it decides where it dies.
const stepsEnv = "WSPROOF_TEST_STEPS"

// reportSteps installs the hook that stepsEnv asks for; TestMain calls it
// in the wsproof processes the tests start.
func reportSteps() {
	if os.Getenv(stepsEnv) == "" {
		return
	}
	in := bufio.NewReader(os.Stdin)
	testHook = func(step string) {
		fmt.Fprintf(os.Stderr, "step %s\n", step)
		if _, err := in.ReadByte(); err != nil {
			os.Exit(3)
		}
	}
}

// editSteps are the steps of an edit of the registry file, in order.
var editSteps = []string{"read", "checked", "temp", "written", "synced", "renamed"}

// registryServer is a "wsproof serve" process serving a registry file.
type registryServer struct {
	*fleetNode
	url string
	pub *keys.PublicSet
}

// serveRegistry starts "wsproof serve" on the registry file reg, with the
// rate limits raised: every client of these tests dials from 127.0.0.1.
func serveRegistry(t *testing.T, dir, reg string) *registryServer {
	t.Helper()
	return serveWith(t, dir, "--registry", reg)
}

// serveWith starts "wsproof serve" as serveRegistry does, with args naming
// its registry and anything else.
func serveWith(t *testing.T, dir string, args ...string) *registryServer {
	t.Helper()
	state, addr := filepath.Join(dir, "state"), filepath.Join(dir, "addr")
	n := startNode(t, "serve", addr, true, append([]string{"serve", "--state", state,
		"--listen", "127.0.0.1:0", "--addr-file", addr,
		"--handshake-rate", "10000", "--handshake-rate-per-addr", "10000", "--max-pending-per-addr", "1000"}, args...)...)
	data, err := os.ReadFile(filepath.Join(state, serverPubFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keys.ParsePublicSet(data)
	if err != nil {
		t.Fatal(err)
	}
	return &registryServer{fleetNode: n, url: "ws://" + n.addr + "/ws", pub: pub}
}

// dial opens a session with the key kid.
func (s *registryServer) dial(kid string, signer crypto.Signer) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Dial(ctx, s.url, &client.Config{KeyID: kid, Signer: signer, Algorithm: clientAlg, ServerKeys: s.pub})
}

// accepts reports whether the server accepts the key kid now: the
// handshake succeeds, rather than being refused (4003) or the session being
// revoked as it opens (4011, the server reloading the registry meanwhile).
// Any other failure fails the test.
func (s *registryServer) accepts(t *testing.T, kid string, signer crypto.Signer) bool {
	t.Helper()
	c, err := s.dial(kid, signer)
	if err == nil {
		c.Close()
		return true
	}
	var ce *client.CloseError
	if !isAuthFailure(err) && !(errors.As(err, &ce) && ce.Code == protocol.CodeSessionRevoked.CloseCode()) {
		t.Fatalf("dial with %s: %v", kid, err)
	}
	return false
}

// waitAccepts waits up to 2 s, a few of the server's polls, for the server
// to accept the key kid (want) or to refuse it.
func (s *registryServer) waitAccepts(t *testing.T, k clientKey, want bool, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for s.accepts(t, k.kid, k.signer) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the server does not serve the registry in the file: %s accepted %v, want %v", what, k.kid, !want, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// plainBin is this package's test binary built without the race detector,
// once, for the editors that the tests in this file start by the hundred:
// it stands in for the wsproof command like the test binary itself
// (TestMain), at a fifth of the race-enabled binary's cost to parse and
// check a registry of hundreds of keys, which an editor does while it holds
// the lock. The server they edit for runs race-enabled.
var plainBin struct {
	once      sync.Once
	dir, path string
	err       error
}

// editorCmd is the wsproof command, built without the race detector, with
// args.
func editorCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	plainBin.once.Do(func() {
		if plainBin.dir, plainBin.err = os.MkdirTemp("", "wsproof-plain-"); plainBin.err != nil {
			return
		}
		plainBin.path = filepath.Join(plainBin.dir, "wsproof")
		goTool, err := exec.LookPath("go")
		if err != nil {
			plainBin.err = fmt.Errorf("the go command, to build the editors: %v", err)
			return
		}
		out, err := exec.Command(goTool, "test", "-c", "-o", plainBin.path, ".").CombinedOutput()
		if err != nil {
			plainBin.err = fmt.Errorf("go test -c: %v\n%s", err, out)
		}
	})
	if plainBin.err != nil {
		t.Fatal(plainBin.err)
	}
	cmd := exec.Command(plainBin.path, args...)
	cmd.Env = append(os.Environ(), "USER=tester")
	return cmd
}

// removePlainBin removes plainBin's folder; TestMain calls it at the end.
func removePlainBin() {
	if plainBin.dir != "" {
		os.RemoveAll(plainBin.dir)
	}
}

// writeRegistry writes entries to path, for a test's starting point.
func writeRegistry(t *testing.T, path string, entries []*keys.Entry) {
	t.Helper()
	data, err := keys.MarshalRegistry(entries)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// clientKey is a client key the test holds, with its public JWK.
type clientKey struct {
	kid    string
	signer crypto.Signer
	jwk    string
}

func newClientKeys(t *testing.T, prefix string, n int) []clientKey {
	t.Helper()
	out := make([]clientKey, n)
	for i := range out {
		kid := fmt.Sprintf("%s%03d", prefix, i)
		s, jwk := newClientKey(t, kid)
		out[i] = clientKey{kid, s, jwk}
	}
	return out
}

func (k clientKey) entry(t *testing.T) *keys.Entry {
	t.Helper()
	tp, err := keys.Thumbprint(k.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &keys.Entry{KeyID: k.kid, Key: k.signer.Public(), Algorithm: clientAlg, Subject: "device-" + k.kid, Thumbprint: tp}
}

// TestConcurrentEditors runs 8 editors at once on one registry file, each
// running 50 "wsproof keys" commands one after another (400 processes): 25
// revocations of keys whose sessions are open on a running server, and 25
// additions. Every command must succeed, every change must be in the final
// file, and the server must close the session of every revoked key: a lost
// revocation leaves its session open.
func TestConcurrentEditors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 400 processes")
	}
	const editors, perEditor = 8, 50
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.jwks")
	victims := newClientKeys(t, "victim-", editors*perEditor/2)
	added := newClientKeys(t, "added-", editors*perEditor/2)
	var entries []*keys.Entry
	for _, k := range victims {
		entries = append(entries, k.entry(t))
	}
	writeRegistry(t, reg, entries)
	srv := serveRegistry(t, dir, reg)

	// One live session per key to be revoked, each watched until it ends.
	type ending struct {
		err error
		at  time.Time
	}
	ended := make([]chan ending, len(victims))
	for i, k := range victims {
		c, err := srv.dial(k.kid, k.signer)
		if err != nil {
			t.Fatalf("session of %s: %v", k.kid, err)
		}
		ch := make(chan ending, 1)
		ended[i] = ch
		go func() {
			defer c.Close()
			for {
				if _, err := c.Read(context.Background()); err != nil {
					ch <- ending{err, time.Now()}
					return
				}
			}
		}()
	}

	revokedAt := make([]time.Time, len(victims))
	// Built before the clock starts; commands made from it in the goroutines.
	proto := editorCmd(t)
	bin, env := proto.Path, proto.Env
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, editors*perEditor)
	for e := range editors {
		wg.Go(func() {
			for j := range perEditor {
				i := e*perEditor/2 + j/2
				args := []string{"keys", "revoke", "--registry", reg, victims[i].kid}
				if j%2 == 1 {
					args = []string{"keys", "add", "--registry", reg, "--jwk", added[i].jwk, "--sub", "device-" + added[i].kid}
				}
				cmd := exec.Command(bin, args...)
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				if err != nil {
					errs <- fmt.Sprintf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
					continue
				}
				if j%2 == 0 {
					revokedAt[i] = time.Now()
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	failures := 0
	for e := range errs {
		if failures++; failures <= 5 {
			t.Error(e)
		}
	}
	if failures > 5 {
		t.Errorf("... and %d more command failures", failures-5)
	}

	s := readRegistry(t, reg)
	lost := 0
	for _, k := range victims {
		if e, ok := s.Lookup(k.kid); !ok || !e.Revoked {
			lost++
		}
	}
	for _, k := range added {
		if _, ok := s.Lookup(k.kid); !ok {
			lost++
		}
	}
	if lost > 0 || s.Len() != len(victims)+len(added) {
		t.Errorf("%d of %d changes are missing from the final file (%d entries, want %d)", lost, editors*perEditor, s.Len(), len(victims)+len(added))
	}

	// Every session ends within 5 s of the last edit, or never will.
	var worst time.Duration
	open := 0
	deadline := time.Now().Add(5 * time.Second)
	for i, ch := range ended {
		var end ending
		select {
		case end = <-ch:
		default:
			select {
			case end = <-ch:
			case <-time.After(time.Until(deadline)):
				open++
				continue
			}
		}
		var ce *client.CloseError
		if !errors.As(end.err, &ce) || ce.Code != protocol.CodeSessionRevoked.CloseCode() {
			t.Errorf("session of %s ended with %v, want close %d", victims[i].kid, end.err, protocol.CodeSessionRevoked.CloseCode())
		}
		if !revokedAt[i].IsZero() {
			worst = max(worst, end.at.Sub(revokedAt[i]))
		}
	}
	if open > 0 {
		t.Errorf("%d sessions of revoked keys are still open 5 s after the last edit: the server never saw their revocation", open)
	}
	t.Logf("%d editors x %d commands (%d processes) in %v, %d command failures; final file: %d of %d changes; "+
		"server closed %d of %d revoked sessions, at most %v after the revoking command returned",
		editors, perEditor, editors*perEditor, took.Round(time.Millisecond), failures, editors*perEditor-lost, editors*perEditor,
		len(victims)-open, len(victims), worst.Round(time.Millisecond))
	// The added keys authenticate: the server serves the final file.
	for _, k := range []clientKey{added[0], added[len(added)-1]} {
		srv.waitAccepts(t, k, true, "after the last edit")
	}
}

// TestKilledEditors kills 200 editors with SIGKILL, each at a random step
// of its edit (after reading, after the compare, with the temporary file
// empty, written, synced, or renamed into place), a random fraction of a
// millisecond after the step. Half add a key, half revoke one. After each
// kill the registry must load and hold either the version before the edit
// or the version after it, the next editor must get the lock at once, and
// the running server must serve that same version; the server must never
// have met a file that does not load.
func TestKilledEditors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 200 processes")
	}
	const kills = 200
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.jwks")
	writeRegistry(t, reg, nil)
	srv := serveRegistry(t, dir, reg)
	ks := newClientKeys(t, "k", kills)
	byKID := map[string]clientKey{}
	for _, k := range ks {
		byKID[k.kid] = k
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	killedAt := map[string]int{}
	changed := 0
	start := time.Now()
	for i := range kills {
		before := readRegistry(t, reg)
		k := ks[i]
		args := []string{"keys", "add", "--registry", reg, "--jwk", k.jwk, "--sub", "device-" + k.kid}
		if live := activeKeys(before); i%2 == 1 && len(live) > 0 {
			k = byKID[live[rng.IntN(len(live))]]
			args = []string{"keys", "revoke", "--registry", reg, k.kid}
		}
		step := editSteps[rng.IntN(len(editSteps))]
		killedAt[step]++
		runKilled(t, editorCmd(t, args...), step, time.Duration(rng.Int64N(int64(time.Millisecond))))

		// The file loads (readRegistry fails the test otherwise) and is the
		// version before the edit or after it.
		after := readRegistry(t, reg)
		e0, had := before.Lookup(k.kid)
		e1, has := after.Lookup(k.kid)
		switch {
		case after.Len() == before.Len() && has == had && (!has || e1.Revoked == e0.Revoked):
		case args[1] == "add" && !had && has && after.Len() == before.Len()+1,
			args[1] == "revoke" && e1.Revoked && !e0.Revoked && after.Len() == before.Len():
			changed++
		default:
			t.Fatalf("editor killed after step %q left a registry that is neither the old version nor the new", step)
		}
		// The kill left no lock behind.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		lock, err := lockFile(ctx, reg+lockSuffix)
		cancel()
		if err != nil {
			t.Fatalf("after a kill at step %q: %v", step, err)
		}
		unlockFile(lock)
		// The server serves the version in the file: the key is accepted
		// if and only if the file holds it unrevoked, once the watcher
		// (polling every 250 ms) has read it.
		srv.waitAccepts(t, k, has && !e1.Revoked, fmt.Sprintf("after a kill at step %q", step))
	}
	// A last, complete edit removes the temporary files the killed editors
	// left.
	extra := newClientKeys(t, "last-", 1)[0]
	if out, err := editorCmd(t, "keys", "add", "--registry", reg, "--jwk", extra.jwk, "--sub", "last").CombinedOutput(); err != nil {
		t.Fatalf("an editor after the kills: %v\n%s", err, out)
	}
	names, _ := os.ReadDir(dir)
	for _, d := range names {
		if strings.HasPrefix(d.Name(), tempPrefix(reg)) {
			t.Errorf("temporary file %s left after a complete edit", d.Name())
		}
	}
	waitMetric(t, "http://"+srv.addr+"/metrics", "wsproof_registry_reload_errors_total 0")
	t.Logf("%d editors killed in %v, by step %v; %d of them had completed their change: each time the registry loaded, held the old or the new version, and the server served it; the server never met a file that did not load",
		kills, time.Since(start).Round(time.Millisecond), killedAt, changed)
}

// activeKeys returns the key ids of the unrevoked entries of s.
func activeKeys(s *keys.Set) []string {
	var out []string
	for _, e := range s.Entries() {
		if !e.Revoked {
			out = append(out, e.KeyID)
		}
	}
	return out
}

// runKilled runs an editor that reports its steps, lets it go through them,
// and kills it with SIGKILL delay after it reports step (if it is still
// running then).
func runKilled(t *testing.T, cmd *exec.Cmd, step string, delay time.Duration) {
	t.Helper()
	cmd.Env = append(cmd.Env, stepsEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	var out strings.Builder
	for lines.Scan() {
		line := lines.Text()
		out.WriteString(line + "\n")
		name, ok := strings.CutPrefix(line, "step ")
		if !ok {
			continue
		}
		stdin.Write([]byte{'\n'})
		if name == step {
			time.Sleep(delay)
			cmd.Process.Kill()
			break
		}
	}
	stdin.Close()
	io.Copy(io.Discard, stderr)
	err = cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && !exit.Exited()) {
		t.Fatalf("editor: %v\n%s", err, out.String())
	}
}

// TestConfigMapSwapServed: "wsproof serve" on a registry mounted as
// Kubernetes mounts a ConfigMap picks up each swap of the mount within 1 s:
// each new version revokes one more key, and that key's live session must
// close within 1 s of the swap.
func TestConfigMapSwapServed(t *testing.T) {
	const swaps = 5
	dir := t.TempDir()
	mount := filepath.Join(dir, "mount")
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	ks := newClientKeys(t, "k", swaps)
	version := func(revoked int) map[string][]byte {
		var entries []*keys.Entry
		for i, k := range ks {
			e := k.entry(t)
			e.Revoked = i < revoked
			entries = append(entries, e)
		}
		data, err := keys.MarshalRegistry(entries)
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{"registry.jwks": data}
	}
	if err := configmap.Update(mount, version(0), time.Time{}); err != nil {
		t.Fatal(err)
	}
	srv := serveRegistry(t, dir, filepath.Join(mount, "registry.jwks"))
	ended := make([]chan time.Time, swaps)
	for i, k := range ks {
		c, err := srv.dial(k.kid, k.signer)
		if err != nil {
			t.Fatal(err)
		}
		ended[i] = make(chan time.Time, 1)
		go func() {
			defer c.Close()
			for {
				if _, err := c.Read(context.Background()); err != nil {
					ended[i] <- time.Now()
					return
				}
			}
		}()
	}
	var worst time.Duration
	for i := range swaps {
		if err := configmap.Update(mount, version(i+1), time.Time{}); err != nil {
			t.Fatal(err)
		}
		swapped := time.Now()
		select {
		case at := <-ended[i]:
			worst = max(worst, at.Sub(swapped))
		case <-time.After(5 * time.Second):
			t.Fatalf("swap %d: the session of %s, revoked by it, is still open after 5 s", i+1, ks[i].kid)
		}
	}
	t.Logf("ConfigMap-style swaps of the registry served: each revoked session closed at most %v after the swap (%d swaps)", worst.Round(time.Millisecond), swaps)
	if worst >= time.Second {
		t.Errorf("a swap took %v to close its revoked session, limit 1 s", worst)
	}
}

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/internal/devtarget"
	"github.com/wsproof/wsproof/internal/pgtest"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/server"
)

// devicesDoc is the document whose build lines the test runs.
const devicesDoc = "../../docs/devices.md"

// needEmulators skips the test, or fails it where the environment requires
// every tool (WSPROOF_REQUIRE_SERVICES=1, as bash .ci/run sets), when qemu
// user emulation is missing for a target.
func needEmulators(t *testing.T, targets []devtarget.Target) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the device program for every target and runs it under emulation: not with -short")
	}
	for _, tg := range targets {
		if _, err := tg.Emulator(); err != nil {
			if pgtest.Required() {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
}

// buildLines returns the go build lines of docs/devices.md's section
// "Cross-compiling" for the device program, by target, and fails the test
// unless there is exactly one per target, written as devtarget.BuildLine
// writes it.
func buildLines(t *testing.T) map[devtarget.Target]string {
	t.Helper()
	data, err := os.ReadFile(devicesDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Cross-compiling\n")
	if !ok {
		t.Fatalf("%s has no section \"## Cross-compiling\"", devicesDoc)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var found []string
	for _, line := range strings.Split(section, "\n") {
		if strings.Contains(line, " go build ") && strings.HasSuffix(line, " ./cmd/wsproof-device") {
			found = append(found, strings.TrimSpace(line))
		}
	}
	out := map[devtarget.Target]string{}
	for _, tg := range devtarget.Devices {
		want := tg.BuildLine("wsproof-device", "./cmd/wsproof-device")
		n := 0
		for _, l := range found {
			if l == want {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s: want the build line\n\t%s\nonce in %s, found it %d times among\n\t%s", tg, want, devicesDoc, n, strings.Join(found, "\n\t"))
		}
		out[tg] = want
	}
	if len(found) != len(devtarget.Devices) {
		t.Fatalf("%s has %d build lines for ./cmd/wsproof-device, want one per target (%d):\n\t%s", devicesDoc, len(found), len(devtarget.Devices), strings.Join(found, "\n\t"))
	}
	return out
}

// builds runs the documented build line of each target, two at a time (a
// build of a new target compiles the standard library for it), and
// returns the binaries. The line runs as written, in the module's root,
// but for its output file, which goes to dir.
type builds struct {
	dir   string
	lines map[devtarget.Target]string
	slots chan struct{}

	mu   sync.Mutex
	done map[devtarget.Target]*buildResult
}

type buildResult struct {
	once sync.Once
	bin  string
	err  error
}

func newBuilds(t *testing.T) *builds {
	return &builds{dir: t.TempDir(), lines: buildLines(t), slots: make(chan struct{}, 2), done: map[devtarget.Target]*buildResult{}}
}

func (b *builds) get(tg devtarget.Target) (string, error) {
	b.mu.Lock()
	r := b.done[tg]
	if r == nil {
		r = &buildResult{}
		b.done[tg] = r
	}
	b.mu.Unlock()
	r.once.Do(func() {
		b.slots <- struct{}{}
		defer func() { <-b.slots }()
		r.bin = filepath.Join(b.dir, "wsproof-device-"+tg.Slug())
		line := strings.Replace(b.lines[tg], " -o wsproof-device ", " -o '"+r.bin+"' ", 1)
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			r.err = fmt.Errorf("%s: %v\n%s", line, err, out)
		}
	})
	return r.bin, r.err
}

// registry is a registry the test changes, as a registry file or database
// changes under a running server.
type registry struct{ set atomic.Pointer[keys.Set] }

func (r *registry) Lookup(kid string) (*keys.Entry, bool) { return r.set.Load().Lookup(kid) }

// echoServer is a wsproof server on a loopback port that echoes every
// message, and can be restarted on the same port.
type echoServer struct {
	t    *testing.T
	cfg  server.Config
	addr string

	srv  *server.Server
	http *http.Server
	done chan struct{}
}

func startEchoServer(t *testing.T, reg keys.Registry, sk *keys.ServerKeys) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{t: t, addr: ln.Addr().String()}
	s.cfg = server.Config{
		Identity: "ws://" + s.addr + "/ws", Keys: sk, Registry: reg,
		// A refresh 3 s after each accept, answered by the device under
		// emulation, before the token's 6 s run out.
		TokenLifetime: 6 * time.Second, RefreshBefore: 3 * time.Second,
		Handler: server.HandlerFunc(func(ctx context.Context, c *server.Conn) {
			for {
				m, err := c.Read(ctx)
				if err != nil {
					return
				}
				if err := c.Send(ctx, m.Data); err != nil {
					return
				}
			}
		}),
	}
	if err := s.serve(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *echoServer) url() string { return "ws://" + s.addr + "/ws" }

func (s *echoServer) serve(ln net.Listener) error {
	srv, err := server.New(&s.cfg)
	if err != nil {
		ln.Close()
		return err
	}
	s.srv, s.http, s.done = srv, &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}, make(chan struct{})
	go func() { s.http.Serve(ln); close(s.done) }()
	return nil
}

// stop shuts the server down as a server going away does: every socket is
// closed with 1001, then the listener.
func (s *echoServer) stop() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	s.http.Close()
	<-s.done
	s.srv = nil
}

// restart stops the server, stays down for down, and starts it again on
// the same address, with the same keys and registry.
func (s *echoServer) restart(down time.Duration) error {
	s.stop()
	time.Sleep(down)
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	return s.serve(ln)
}

func serverKeys(t *testing.T) *keys.ServerKeys {
	t.Helper()
	signer, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, keys.TokenKeySize)
	rand.Read(secret)
	return &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "server-es256", Algorithm: keys.ES256, Signer: signer}},
		Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: secret}},
	}
}

// deviceFiles writes a new device key and the server's public key set, as
// a device is provisioned, and returns the key's registry entry.
func deviceFiles(t *testing.T, dir, kid string, alg keys.Algorithm, sk *keys.ServerKeys) (keyFile, setFile string, e *keys.Entry) {
	t.Helper()
	signer, err := keys.Generate(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := keys.MarshalPrivatePEM(signer)
	if err != nil {
		t.Fatal(err)
	}
	set, err := keys.MarshalPublicSet(sk.Public())
	if err != nil {
		t.Fatal(err)
	}
	keyFile, setFile = filepath.Join(dir, kid+".pem"), filepath.Join(dir, "server.pub.jwks")
	if err := os.WriteFile(keyFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(setFile, set, 0o644); err != nil {
		t.Fatal(err)
	}
	return keyFile, setFile, &keys.Entry{KeyID: kid, Key: signer.Public(), Algorithm: alg, Subject: kid + "@test", Groups: []string{"devices"}}
}

// running is a device program in progress and its output, line by line.
type running struct {
	cmd    *exec.Cmd
	stderr strings.Builder // read once the program has exited

	mu     sync.Mutex
	lines  []string // every line of standard output so far
	eof    bool
	notify chan struct{} // a line arrived, or the output ended
	next   int           // the next line expect reads

	exited  chan struct{} // closed when the program has exited
	waitErr error
}

func start(cmd *exec.Cmd) (*running, error) {
	r := &running{cmd: cmd, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &r.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
			r.poke()
		}
		io.Copy(io.Discard, out)
		r.mu.Lock()
		r.eof = true
		r.mu.Unlock()
		r.poke()
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()
	return r, nil
}

func (r *running) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// kill ends the program, if it still runs, and waits for it.
func (r *running) kill() {
	r.cmd.Process.Kill()
	<-r.exited
}

// transcript is the output, for messages once the program has exited.
func (r *running) transcript() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "stdout:\n\t" + strings.Join(r.lines, "\n\t") + "\nstderr:\n\t" + strings.ReplaceAll(strings.TrimSpace(r.stderr.String()), "\n", "\n\t")
}

// expect waits for the next line, which must match pattern (lines that
// match skip, if not nil, are passed over), and returns its submatches.
func (r *running) expect(timeout time.Duration, pattern string, skip *regexp.Regexp) ([]string, error) {
	re := regexp.MustCompile("^" + pattern + "$")
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		var line string
		have, eof := r.next < len(r.lines), r.eof
		if have {
			line = r.lines[r.next]
			r.next++
		}
		r.mu.Unlock()
		switch {
		case have:
			if m := re.FindStringSubmatch(line); m != nil {
				return m, nil
			}
			if skip != nil && skip.MatchString(line) {
				continue
			}
			return nil, fmt.Errorf("got %q, want %q", line, pattern)
		case eof:
			return nil, fmt.Errorf("output ended waiting for %q", pattern)
		}
		select {
		case <-r.notify:
		case <-deadline.C:
			return nil, fmt.Errorf("no line matching %q within %s", pattern, timeout)
		}
	}
}

// stepTimeout bounds each step of a device under emulation, on a machine
// that the rest of the test suite keeps busy.
const stepTimeout = 60 * time.Second

// refreshes are lines a step may pass over: a slow machine can let a
// session refresh again before the step the test waits for.
var refreshes = regexp.MustCompile(`^refreshed n=\d+ exp=\d+$`)

// deviceRun is one target's run: its own server, key and registry.
type deviceRun struct {
	target devtarget.Target
	srv    *echoServer
	reg    *registry
	entry  *keys.Entry
	key    string // the key file
	set    string // the pinned server key set
	r      *running
}

// TestDevices runs the device program on every device target under qemu
// user emulation (and natively, on linux/amd64), each against its own
// wsproof server on loopback, through the steps of a device's life, all
// targets at once:
//
//  1. it connects with client.Keep and a message comes back (connected,
//     echo);
//  2. the server re-challenges it 3 s into its 6 s token, it answers
//     without dropping the socket, and messages still flow (refreshed);
//  3. the server goes away (Shutdown: 1001, retryable), stays away for a
//     second, and comes back on the same port: Keep reconnects with backoff
//     (ended close=1001 retryable=yes, connected n=2, echo);
//  4. its key is revoked in the registry, and the server rechecks its
//     sessions (as it does on every registry change): 4011
//     session_revoked, which is terminal, so Keep stops and the program
//     exits with status 1 (ended close=4011 retryable=no, stopped).
//
// Each target is built with its line in docs/devices.md, run as written
// except for the output file. Without qemu the emulated targets are
// skipped, but where WSPROOF_REQUIRE_SERVICES=1 (bash .ci/run) the test
// fails instead.
func TestDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the device program for every target and runs it under emulation: not with -short")
	}
	targets := []devtarget.Target{devtarget.Native}
	var missing error
	for _, tg := range devtarget.Devices {
		if _, err := tg.Emulator(); err != nil {
			missing = err
			continue
		}
		targets = append(targets, tg)
	}
	if missing != nil && pgtest.Required() {
		t.Fatal(missing)
	}
	b := newBuilds(t)
	b.lines[devtarget.Native] = devtarget.Native.BuildLine("wsproof-device", "./cmd/wsproof-device")
	devs := make([]*deviceRun, len(targets))
	for i, tg := range targets {
		dir := t.TempDir()
		sk := serverKeys(t)
		d := &deviceRun{target: tg, reg: &registry{}}
		d.key, d.set, d.entry = deviceFiles(t, dir, "device-"+tg.Slug(), keys.ES256, sk)
		set, err := keys.NewSet([]*keys.Entry{d.entry})
		if err != nil {
			t.Fatal(err)
		}
		d.reg.set.Store(set)
		d.srv = startEchoServer(t, d.reg, sk)
		devs[i] = d
	}
	errs := make([]error, len(devs))
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() { errs[i] = d.run(b) })
	}
	wg.Wait()
	for i, d := range devs {
		t.Run(d.target.Slug(), func(t *testing.T) {
			switch {
			case errs[i] != nil && d.r != nil:
				t.Errorf("%s: %v\n%s", d.target, errs[i], d.r.transcript())
			case errs[i] != nil:
				t.Errorf("%s: %v", d.target, errs[i])
			default:
				t.Logf("%s:\n%s", d.target, d.r.transcript())
			}
		})
	}
	if missing != nil {
		t.Run("emulated", func(t *testing.T) { t.Skip(missing) })
	}
}

// run is one target's scenario (see TestDevices).
func (d *deviceRun) run(b *builds) error {
	bin, err := b.get(d.target)
	if err != nil {
		return err
	}
	cmd, err := d.target.Command(bin, nil, "-key", d.key, "-kid", d.entry.KeyID, "-server-keys", d.set, "-every", "200ms", d.srv.url())
	if err != nil {
		return err
	}
	if d.r, err = start(cmd); err != nil {
		return err
	}
	defer d.r.kill()
	step := func(pattern string) ([]string, error) { return d.r.expect(stepTimeout, pattern, refreshes) }

	// 1 and 2: connected, echo, refreshed.
	m, err := step(`connected n=1 sub=` + regexp.QuoteMeta(d.entry.Subject) + ` exp=(\d+)`)
	if err != nil {
		return err
	}
	exp1, _ := strconv.ParseInt(m[1], 10, 64)
	if _, err := step(`echo n=1`); err != nil {
		return err
	}
	if m, err = d.r.expect(stepTimeout, `refreshed n=1 exp=(\d+)`, nil); err != nil {
		return err
	}
	if exp2, _ := strconv.ParseInt(m[1], 10, 64); exp2 <= exp1 {
		return fmt.Errorf("the refreshed session expires at %d, the first at %d", exp2, exp1)
	}

	// 3: the server goes away and comes back.
	if err := d.srv.restart(time.Second); err != nil {
		return err
	}
	if _, err := step(`ended n=1 close=1001 retryable=yes`); err != nil {
		return err
	}
	if _, err := step(`connected n=2 sub=` + regexp.QuoteMeta(d.entry.Subject) + ` exp=\d+`); err != nil {
		return err
	}
	if _, err := step(`echo n=2`); err != nil {
		return err
	}

	// 4: revoked.
	revoked := *d.entry
	revoked.Revoked = true
	set, err := keys.NewSet([]*keys.Entry{&revoked})
	if err != nil {
		return err
	}
	d.reg.set.Store(set)
	if n := d.srv.srv.Recheck(); n != 1 {
		return fmt.Errorf("Recheck closed %d sessions, want 1", n)
	}
	if _, err := step(`ended n=2 close=4011 retryable=no`); err != nil {
		return err
	}
	if _, err := step(`stopped close=4011 error=".*"`); err != nil {
		return err
	}
	select {
	case <-d.r.exited:
	case <-time.After(stepTimeout):
		return errors.New("the program did not exit after Keep stopped")
	}
	if ee, ok := errors.AsType[*exec.ExitError](d.r.waitErr); !ok || ee.ExitCode() != 1 {
		return fmt.Errorf("exit: %v, want status 1", d.r.waitErr)
	}
	return nil
}

// TestConformanceGuide runs the shell block of docs/devices.md's section
// "Running the conformance suite against a device build" as written, from
// the repository's root, with TMPDIR in the test's temporary folder: it
// builds wsproof and the device program for linux/mips (GOMIPS=softfloat:
// 32-bit and big-endian, the target most unlike the machines the client is
// developed on), and drives the emulated program through the client suite
// of "wsproof probe client", one process per case, in diagnostic mode, so
// that every negative case checks the exact spec code. The block must end
// with status 0 (every case passed), and the probe's JSON report must hold
// every case of the suite but the keepalive ones, each passed.
func TestConformanceGuide(t *testing.T) {
	const heading = "## Running the conformance suite against a device build"
	needEmulators(t, []devtarget.Target{devtarget.Devices[4]})
	if _, err := exec.LookPath("qemu-mips-static"); err != nil {
		if pgtest.Required() {
			t.Fatal("the guide runs qemu-mips-static: apt-get install qemu-user-static (bash .ci/run does)")
		}
		t.Skip("the guide runs qemu-mips-static, from Debian's qemu-user-static")
	}
	data, err := os.ReadFile(devicesDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no heading %q", devicesDoc, heading)
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if !ok {
		t.Fatalf("%s: no sh block after %q", devicesDoc, heading)
	}
	block, _, _ = strings.Cut(block, "```")
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", block)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	// The block starts the probe in the background: its whole process
	// group goes when the block ends or times out.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("the guide's block: %v\n%s", err, out)
	}
	t.Logf("the guide's block printed:\n%s", out)
	reports, _ := filepath.Glob(filepath.Join(tmp, "*", "probe.json"))
	if len(reports) != 1 {
		t.Fatalf("want one probe.json under %s, found %v", tmp, reports)
	}
	raw, err := os.ReadFile(reports[0])
	if err != nil {
		t.Fatal(err)
	}
	var rep conformance.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	want := 0 // the guide's run: no keepalive cases, ws:// only
	for _, c := range conformance.ClientCases() {
		if !strings.HasPrefix(c.ID, "keepalive-") && c.Transport != "tls" {
			want++
		}
	}
	for _, c := range rep.Cases {
		if c.Result != conformance.Pass {
			t.Errorf("%s: %s; expected %s, got %s %s", c.ID, c.Result, c.Expected, c.Got, c.Note)
		}
	}
	if rep.Passed != want || len(rep.Cases) != want || !rep.Diagnostic {
		t.Errorf("%d of %d cases passed (diagnostic %v), want all %d of the suite but the keepalive and TLS-only cases", rep.Passed, len(rep.Cases), rep.Diagnostic, want)
	}
}

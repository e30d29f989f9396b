// Package pgtest runs throwaway PostgreSQL servers for tests that need a
// real database.
//
// Start runs initdb into a fresh directory and starts the server on
// 127.0.0.1 with a free port. It takes a second or two, so a package may
// share one Cluster between its tests and give each test its own database
// with NewDatabase; tests that Stop the server need their own Cluster.
//
// The server binaries are looked up in the newest /usr/lib/postgresql/*/bin
// (Debian and Ubuntu), then in PATH. Without them the test is skipped,
// unless WSPROOF_REQUIRE_SERVICES=1, set by .ci/run, which makes it fail:
// there the tests that need a service must never silently skip. PostgreSQL refuses to run as
// root; under root, pgtest runs it as the "postgres" user.
package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv is the environment variable that turns a missing service or
// tool (PostgreSQL, HAProxy, the shells of the completion tests) into a
// test failure instead of a skip. bash .ci/run sets it to 1.
const RequireEnv = "WSPROOF_REQUIRE_SERVICES"

// Required reports whether the environment requires every service: a test
// that cannot find one must fail, not skip.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// startTimeout bounds the wait for a server to accept connections.
const startTimeout = 60 * time.Second

// Cluster is a PostgreSQL server with its own data directory. Its methods
// are not safe for concurrent use, except URL and NewDatabase.
type Cluster struct {
	bin  string // directory of initdb and postgres
	dir  string // owned by the server's user: data/, the socket, postgres.log
	port int
	cred *syscall.Credential // nil unless running as root

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited

	dbs atomic.Int64 // databases made by NewDatabase
}

// Start starts a new cluster with a database named "test", which URL
// names, and registers its shutdown and removal with t.Cleanup.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := findBin(t)
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		c.cred = serverUser(t)
	}
	base := os.TempDir()
	// Unix socket paths are limited to about 100 bytes.
	if c.cred != nil || len(base) > 60 {
		base = tempBase(t)
	}
	dir, err := os.MkdirTemp(base, "wsproof-pgtest-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	c.dir = dir
	t.Cleanup(func() {
		c.stop()
		os.RemoveAll(dir)
	})
	if c.cred != nil {
		if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	initdb := c.command(filepath.Join(bin, "initdb"), "-D", c.data(), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	// A free port can be taken between closing it here and the server
	// binding it; try a few.
	for attempt := 0; ; attempt++ {
		c.port = freePort(t)
		err := c.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("pgtest: %v", err)
		}
	}
	c.createDatabase(t, "test")
	return c
}

// URL returns the URL of the database "test".
func (c *Cluster) URL() string { return c.url("test") }

func (c *Cluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("db%d", c.dbs.Add(1))
	c.createDatabase(t, name)
	return c.url(name)
}

func (c *Cluster) createDatabase(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
}

// Stop shuts the server down (fast shutdown: clients are disconnected),
// keeping its data and port, to simulate an outage.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if c.cmd == nil {
		t.Fatal("pgtest: Stop of a stopped cluster")
	}
	c.stop()
}

// Restart starts a stopped server again, on the same port and data.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if c.cmd != nil {
		t.Fatal("pgtest: Restart of a running cluster")
	}
	if err := c.start(); err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// start runs the server and waits until it accepts connections.
func (c *Cluster) start() error {
	logPath := filepath.Join(c.dir, "postgres.log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own copy
	start, _ := log.Seek(0, 2)
	cmd := c.command(filepath.Join(c.bin, "postgres"), "-D", c.data(),
		"-p", strconv.Itoa(c.port), "-k", c.dir,
		"-c", "listen_addresses=127.0.0.1",
		// Durability is worthless for a throwaway cluster, and slow.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB", "-c", "logging_collector=off")
	cmd.Stdout, cmd.Stderr = log, log
	// If the test binary dies, take the server with it (SIGQUIT is an
	// immediate shutdown).
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	c.cmd, c.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-done:
			c.cmd = nil
			return fmt.Errorf("postgres exited: %s", c.logSince(logPath, start))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return fmt.Errorf("postgres did not accept connections within %v: %v\n%s", startTimeout, err, c.logSince(logPath, start))
		}
	}
}

// stop shuts the server down, if it runs: a fast shutdown, then an
// immediate one, then a kill.
func (c *Cluster) stop() {
	if c.cmd == nil {
		return
	}
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL} {
		c.cmd.Process.Signal(sig)
		select {
		case <-c.done:
			c.cmd = nil
			return
		case <-time.After(10 * time.Second):
		}
	}
	<-c.done
	c.cmd = nil
}

func (c *Cluster) logSince(path string, off int64) string {
	data, _ := os.ReadFile(path)
	if off < int64(len(data)) {
		data = data[off:]
	}
	return string(bytes.TrimSpace(data))
}

// command prepares a server binary, run as the server's user under root.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

// findBin returns the directory of initdb and postgres, or skips (fails
// under RequireEnv) the test.
func findBin(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err == nil && v > bestV && hasServer(d) {
			best, bestV = d, v
		}
	}
	if best != "" {
		return best
	}
	if p, err := exec.LookPath("postgres"); err == nil && hasServer(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	missing(t, "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or PATH; "+
		"install them (Debian, Ubuntu: apt-get install postgresql; macOS: brew install postgresql) to run this test")
	return ""
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// serverUser returns the credential of the "postgres" user, for running
// the server under root.
func serverUser(t testing.TB) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		missing(t, "running as root and there is no \"postgres\" user to run PostgreSQL as; create one or run the tests as another user")
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("pgtest: user postgres has uid %q, gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// tempBase returns a directory for the cluster, short enough for the
// socket's path, whose every parent the server's user, not being root, can
// traverse: os.TempDir() if so, else /tmp.
func tempBase(t testing.TB) string {
	t.Helper()
	for _, base := range []string{os.TempDir(), "/tmp"} {
		if len(base) <= 60 && traversable(base) {
			return base
		}
	}
	t.Fatalf("pgtest: neither %s nor /tmp is a short path that other users can traverse; set TMPDIR", os.TempDir())
	return ""
}

func traversable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if Required() {
		t.Fatalf("pgtest: %s (%s=1 forbids skipping)", msg, RequireEnv)
	}
	t.Skipf("pgtest: %s", msg)
}

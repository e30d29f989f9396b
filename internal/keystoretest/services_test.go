package keystoretest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// slowListener is a daemon, run as this test binary, that binds its Unix
// socket (so the file exists) and only listens 300 ms later, as a daemon
// under load can. A client connecting in between is refused.
func slowListener(sock string) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		os.Exit(2)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		os.Exit(2)
	}
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Listen(fd, 8); err != nil {
		os.Exit(2)
	}
	for {
		nfd, _, err := syscall.Accept(fd)
		if err == nil {
			syscall.Close(nfd)
		}
	}
}

func TestMain(m *testing.M) {
	if sock := os.Getenv("KEYSTORETEST_SLOW_LISTENER"); sock != "" {
		slowListener(sock)
	}
	os.Exit(m.Run())
}

// TestStartDaemonWaitsForListen: startDaemon returns only once the socket
// accepts connections, not when its file appears. (It used to wait for the
// file; ssh-add then met ECONNREFUSED under load in CI.)
func TestStartDaemonWaitsForListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "d.sock")
	if len(sock) > 100 {
		dir, err := shortDir(t.Cleanup, "wsproof-kt-")
		if err != nil {
			t.Fatal(err)
		}
		sock = filepath.Join(dir, "d.sock")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "KEYSTORETEST_SLOW_LISTENER="+sock)
	if err := startDaemon(t.Cleanup, cmd, sock); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("startDaemon returned before the daemon listened: %v", err)
	}
	c.Close()
}

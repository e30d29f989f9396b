package keystoretest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// The key stores the tests run for real: OpenSSH's ssh-agent, SoftHSM2
// and swtpm, all from Debian. Each function takes the test's way of
// registering cleanup (t.Cleanup, or a testscript's Defer).

// shortDir makes a folder with a short path: Unix socket paths are limited
// to about 100 bytes, and test folders can be long.
func shortDir(cleanup func(func()), prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	cleanup(func() { os.RemoveAll(dir) })
	return dir, nil
}

// startDaemon starts cmd, kills it at cleanup, and waits until its socket
// accepts a connection. The socket's file appears at bind(2), before the
// daemon calls listen(2); a client that connects in between is refused
// (ECONNREFUSED), so the file's existence is not readiness.
func startDaemon(cleanup func(func()), cmd *exec.Cmd, sock string) error {
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not accepting connections on its socket: %v", filepath.Base(cmd.Path), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StartSSHAgent starts OpenSSH's ssh-agent in the foreground on a socket of
// its own, and returns the socket's path (for SSH_AUTH_SOCK).
func StartSSHAgent(cleanup func(func())) (string, error) {
	dir, err := shortDir(cleanup, "wsproof-agent-")
	if err != nil {
		return "", err
	}
	sock := filepath.Join(dir, "agent.sock")
	return sock, startDaemon(cleanup, exec.Command("ssh-agent", "-D", "-a", sock), sock)
}

// StartSWTPM starts a TPM 2.0 emulator (swtpm) with a fresh state of its
// own, serving the TPM command stream on a Unix socket (a tpm: URI's
// device=), and returns the socket's path.
func StartSWTPM(cleanup func(func())) (string, error) {
	dir, err := shortDir(cleanup, "wsproof-swtpm-")
	if err != nil {
		return "", err
	}
	sock := filepath.Join(dir, "tpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl.sock"),
		"--flags", "not-need-init,startup-clear")
	return sock, startDaemon(cleanup, cmd, sock)
}

// SoftHSM is a SoftHSM2 token made for a test.
type SoftHSM struct {
	Conf    string // the configuration, for SOFTHSM2_CONF
	Module  string // the PKCS #11 module, for module-path=
	PINFile string // a file holding the user PIN, for pin-source=file:
	PIN     string
	Label   string
	Serial  string
}

// InitSoftHSM initializes a token labelled label in a SoftHSM2
// configuration of its own in dir, with softhsm2-util. The caller sets
// SOFTHSM2_CONF to Conf for the processes that use it: SoftHSM reads it
// when the module is first loaded.
func InitSoftHSM(dir, label string) (*SoftHSM, error) {
	h := &SoftHSM{Label: label, PIN: "1234-test-only"}
	for _, p := range []string{"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"} {
		if _, err := os.Stat(p); err == nil {
			h.Module = p
			break
		}
	}
	if h.Module == "" {
		return nil, errors.New("libsofthsm2.so is not where Debian puts it: apt-get install softhsm2")
	}
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return nil, err
	}
	h.Conf = filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(h.Conf, fmt.Appendf(nil, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", dir), 0o600); err != nil {
		return nil, err
	}
	util := func(args ...string) ([]byte, error) {
		cmd := exec.Command("softhsm2-util", args...)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+h.Conf)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("softhsm2-util %s: %v: %s", args[0], err, out)
		}
		return out, nil
	}
	if _, err := util("--init-token", "--free", "--label", label, "--pin", h.PIN, "--so-pin", "5678-test-only"); err != nil {
		return nil, err
	}
	out, err := util("--show-slots")
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`Serial number:\s+([0-9a-f]+)\s+Initialized:\s+yes\s+User PIN init.:\s+yes\s+Label:\s+` + regexp.QuoteMeta(label) + `\s`).FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no serial number for the token in:\n%s", out)
	}
	h.Serial = string(m[1])
	h.PINFile = filepath.Join(dir, "pin")
	return h, os.WriteFile(h.PINFile, []byte(h.PIN+"\n"), 0o600)
}

// SSHAgent is StartSSHAgent for a test, which it skips (or fails, see Need)
// without OpenSSH's ssh-agent and ssh-add.
func SSHAgent(t testing.TB) string {
	t.Helper()
	Need(t, "ssh-agent", "openssh-client")
	Need(t, "ssh-add", "openssh-client")
	return started(t)(StartSSHAgent(t.Cleanup))
}

// SWTPM is StartSWTPM for a test, which it skips (or fails, see Need)
// without swtpm.
func SWTPM(t testing.TB) string {
	t.Helper()
	Need(t, "swtpm", "swtpm")
	return started(t)(StartSWTPM(t.Cleanup))
}

func started(t testing.TB) func(string, error) string {
	return func(sock string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return sock
	}
}

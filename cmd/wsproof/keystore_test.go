package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/wsproof/wsproof/internal/keystoretest"
)

// TestKeyStoreScripts runs the transcripts in testdata/keystore/*.txt: keys
// made by "wsproof keygen --store" in a real ssh-agent, SoftHSM2 token and
// swtpm TPM, enrolled with the printed command, and used by "wsproof
// connect" against "wsproof serve". Each script skips without its service,
// unless the environment requires every service ([services], set by bash
// .ci/run), where the command that starts it fails instead.
func TestKeyStoreScripts(t *testing.T) {
	p := scriptParams(t)
	p.Dir = filepath.Join("testdata", "keystore")
	cmds := map[string]func(ts *testscript.TestScript, neg bool, args []string){}
	for name, f := range p.Cmds {
		cmds[name] = f
	}
	cmds["sshagent"] = cmdSSHAgent
	cmds["softhsm"] = cmdSoftHSM
	cmds["swtpm"] = cmdSWTPM
	p.Cmds = cmds
	testscript.Run(t, p)
}

// need fails the script when a program is missing.
func need(ts *testscript.TestScript, name, pkg string) {
	if _, err := exec.LookPath(name); err != nil {
		ts.Fatalf("%s is not installed: apt-get install %s (bash .ci/run does)", name, pkg)
	}
}

// cmdSSHAgent starts an ssh-agent for the rest of the script and sets
// SSH_AUTH_SOCK:
//
//	sshagent
var cmdSSHAgent = daemonCmd("sshagent", "ssh-agent", "openssh-client", "SSH_AUTH_SOCK", keystoretest.StartSSHAgent)

// cmdSWTPM starts a TPM 2.0 emulator for the rest of the script and sets
// TPMSOCK to its socket:
//
//	swtpm
var cmdSWTPM = daemonCmd("swtpm", "swtpm", "swtpm", "TPMSOCK", keystoretest.StartSWTPM)

// daemonCmd is a script command, taking no arguments, that starts a
// service with start (which needs the program prog from the Debian package
// pkg) and sets the variable env to its socket.
func daemonCmd(name, prog, pkg, env string, start func(func(func())) (string, error)) func(*testscript.TestScript, bool, []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 0 {
			ts.Fatalf("usage: %s", name)
		}
		need(ts, prog, pkg)
		sock, err := start(ts.Defer)
		ts.Check(err)
		ts.Setenv(env, sock)
	}
}

// cmdSoftHSM initializes a SoftHSM2 token labelled LABEL in the script's
// folder and sets SOFTHSM2_CONF, and MODULE and PINFILE for its URIs:
//
//	softhsm LABEL
func cmdSoftHSM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: softhsm LABEL")
	}
	need(ts, "softhsm2-util", "softhsm2")
	h, err := keystoretest.InitSoftHSM(ts.MkAbs("softhsm"), args[0])
	ts.Check(err)
	ts.Setenv("SOFTHSM2_CONF", h.Conf)
	ts.Setenv("MODULE", h.Module)
	ts.Setenv("PINFILE", h.PINFile)
}

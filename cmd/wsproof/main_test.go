package main

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary stand in for the wsproof command: a script's
// "exec wsproof ..." runs main through testscript.
func TestMain(m *testing.M) {
	testscript.Main(cleanupAfter{m}, map[string]func(){
		"wsproof": func() {
			reportSteps()
			main()
		},
	})
}

// cleanupAfter runs the tests, then removes what they shared.
type cleanupAfter struct{ m *testing.M }

func (c cleanupAfter) Run() int {
	defer removePlainBin()
	return c.m.Run()
}

// TestScripts runs the transcripts in testdata/*.txt through the wsproof
// binary.
func TestScripts(t *testing.T) {
	vectors, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	sessionVectors, err := os.ReadFile(filepath.Join("..", "..", "testdata", "session-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("WSPROOF_STATE", filepath.Join(env.WorkDir, "state"))
			env.Setenv("USER", "tester")
			// Under -race each process would otherwise sleep a second at
			// exit, and the scripts start a hundred of them.
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			// The repository's vector files, where "wsproof vectors check"
			// looks by default.
			if err := os.MkdirAll(filepath.Join(env.WorkDir, "testdata"), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(env.WorkDir, "testdata", "session-vectors.json"), sessionVectors, 0o644); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(env.WorkDir, "testdata", "vectors.json"), vectors, 0o644)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile":  cmdWaitFile,
			"waithttp":  cmdWaitHTTP,
			"certpin":   cmdCertPin,
			"filemode":  cmdFileMode,
			"replace":   cmdReplace,
			"stdoutvar": cmdStdoutVar,
		},
	})
}

// waitTimeout bounds every wait of the scripts' custom commands.
const waitTimeout = 15 * time.Second

// cmdWaitFile waits until FILE exists and is not empty, then sets the
// environment variable VAR to its contents without surrounding space:
//
//	waitfile FILE VAR
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitfile FILE VAR")
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		data, err := os.ReadFile(ts.MkAbs(args[0]))
		if s := strings.TrimSpace(string(data)); err == nil && s != "" {
			ts.Setenv(args[1], s)
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within %v", args[0], waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cmdWaitHTTP fetches URL until it answers 200 with a body matching REGEXP.
// TLS certificates are not checked: the scripts only read /healthz and
// /metrics of their own server.
//
//	waithttp URL REGEXP
func cmdWaitHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waithttp URL REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	hc := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(waitTimeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
		ts.Check(err)
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			last = resp.Status
			if resp.StatusCode == http.StatusOK && re.Match(body) {
				cancel()
				return
			}
		} else {
			last = err.Error()
		}
		cancel()
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not answer with %q within %v (last: %s)", args[0], args[1], waitTimeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cmdCertPin sets VAR to the pin of the PEM certificate in FILE, as
// "wsproof connect --pin" takes it:
//
//	certpin FILE VAR
func cmdCertPin(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: certpin FILE VAR")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		ts.Fatalf("%s holds no PEM certificate", args[0])
	}
	ts.Setenv(args[1], certPin(block.Bytes))
}

// cmdFileMode checks that FILE has the permission bits OCTAL. It checks
// nothing on Windows, which has no such bits.
//
//	filemode FILE OCTAL
func cmdFileMode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: filemode FILE OCTAL")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if runtime.GOOS == "windows" {
		return
	}
	if got := fi.Mode().Perm(); got != os.FileMode(want) {
		ts.Fatalf("%s has mode %#o, want %#o", args[0], got, want)
	}
}

// cmdReplace replaces the first occurrence of OLD in FILE with NEW, and
// fails if there is none.
//
//	replace FILE OLD NEW
func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	path := ts.MkAbs(args[0])
	data, err := os.ReadFile(path)
	ts.Check(err)
	s := string(data)
	if !strings.Contains(s, args[1]) {
		ts.Fatalf("%s does not contain %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(path, []byte(strings.Replace(s, args[1], args[2], 1)), 0o644))
}

// cmdStdoutVar sets NAME to the first submatch of REGEXP in the last
// command's standard output, for a key id a command made up.
func cmdStdoutVar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: stdoutvar NAME REGEXP")
	}
	re, err := regexp.Compile(`(?m)` + args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("stdout does not match %q", args[1])
	}
	ts.Setenv(args[0], m[1])
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb":           "a b",
		"a\x1b[31mb":     "a [31mb",
		"  spaced  out ": "spaced out",
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":       "plain",
		"user@host":   "user@host",
		`{"a":"b"}`:   `'{"a":"b"}'`,
		"it's":        `'it'\''s'`,
		"two words":   "'two words'",
		"$(rm -rf /)": "'$(rm -rf /)'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

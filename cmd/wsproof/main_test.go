package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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

	"github.com/wsproof/wsproof/internal/pgtest"
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
	testscript.Run(t, scriptParams(t))
}

// scriptParams are the parameters of the scripts in testdata and of those
// made from the documents (docs_test.go): a state folder of their own, the
// repository's vector files, and the custom commands below.
func scriptParams(t *testing.T) testscript.Params {
	t.Helper()
	vectors, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	sessionVectors, err := os.ReadFile(filepath.Join("..", "..", "testdata", "session-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	return testscript.Params{
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
		// [services]: the environment requires every service and tool
		// (bash .ci/run), so a script must fail rather than skip without one.
		Condition: func(cond string) (bool, error) {
			if cond == "services" {
				return pgtest.Required(), nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile":    cmdWaitFile,
			"waithttp":    cmdWaitHTTP,
			"certpin":     cmdCertPin,
			"filemode":    cmdFileMode,
			"replace":     cmdReplace,
			"stdoutvar":   cmdStdoutVar,
			"timevar":     cmdTimeVar,
			"expiredcert": cmdExpiredCert,
		},
	}
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

// cmdTimeVar sets NAME to the time DURATION from now, in RFC 3339 to the
// second, for a key's validity that ends during a script:
//
//	timevar NAME DURATION
func cmdTimeVar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: timevar NAME DURATION")
	}
	d, err := time.ParseDuration(args[1])
	ts.Check(err)
	ts.Setenv(args[0], time.Now().Add(d).UTC().Format(time.RFC3339))
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

// TestCommandTable checks the commands table, which suggestions and shell
// completion read, against the dispatchers and the help: every command and
// subcommand it lists answers -h, help names every command, and an unknown
// subcommand is refused with a suggestion from the table.
func TestCommandTable(t *testing.T) {
	run := func(args ...string) (int, string) {
		var out, errOut strings.Builder
		c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		return c.run(context.Background(), args), out.String() + errOut.String()
	}
	for _, cmd := range commands {
		if cmd.name != "help" && !strings.Contains(usage, "wsproof "+cmd.name) {
			t.Errorf("the help does not name command %q", cmd.name)
		}
		paths := [][]string{{cmd.name}}
		if cmd.name == "completion" {
			paths = nil // its subcommands are arguments: "completion bash" prints a script
		}
		for _, sub := range cmd.subs {
			if cmd.name != "completion" {
				paths = append(paths, []string{cmd.name, sub})
			}
		}
		for _, p := range paths {
			if code, out := run(append(p, "-h")...); code != 0 || !strings.Contains(out, "Usage") {
				t.Errorf("wsproof %s -h: exit %d, output %q", strings.Join(p, " "), code, out)
			}
		}
		if len(cmd.subs) > 0 && cmd.name != "completion" {
			typo := cmd.subs[0][:len(cmd.subs[0])-1] + "x"
			code, out := run(cmd.name, typo)
			if code != 2 || !strings.Contains(out, "did you mean") {
				t.Errorf("wsproof %s %s: exit %d, output %q; want a usage error with a suggestion", cmd.name, typo, code, out)
			}
		}
	}
}

// cmdExpiredCert writes a self-signed certificate for localhost that
// expired yesterday, and its key, as PEM files:
//
//	expiredcert CERTFILE KEYFILE
func cmdExpiredCert(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: expiredcert CERTFILE KEYFILE")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: now.AddDate(0, 0, -30), NotAfter: now.AddDate(0, 0, -1)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ts.Check(err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
}

// TestCertError: a certificate the client does not accept is explained by
// what is wrong with it. An expired one used to get "pass --ca FILE", which
// sends a user who passed --ca looking in the wrong place.
func TestCertError(t *testing.T) {
	leaf := &x509.Certificate{NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC),
		DNSNames: []string{"a.example"}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired},
			"the server's TLS certificate is not valid now (valid 2020-01-01T00:00:00Z to 2021-01-01T00:00:00Z): the server must renew it; if it is current, check this machine's clock"},
		{x509.HostnameError{Certificate: leaf, Host: "b.example"},
			"the server's TLS certificate is for another name: check the host in the URL: x509: certificate is valid for a.example, not b.example"},
		{x509.UnknownAuthorityError{Cert: leaf},
			`cannot verify the server's TLS certificate: no trusted CA signed it: pass --ca FILE with the CA that signed it, or --pin HEX for a "wsproof serve --tls-dev" server`},
	} {
		err := dialError(context.Background(), &tls.CertificateVerificationError{Err: tc.err}, "wss://b.example/ws", "", nil, false)
		if got := explain(err); got != tc.want {
			t.Errorf("%T:\n got %s\nwant %s", tc.err, got, tc.want)
		}
	}
}

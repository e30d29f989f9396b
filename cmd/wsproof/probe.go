package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/conformance"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// The probe is the conformance suite of package conformance run from the
// command line: this file holds its flags, the keys and defaults it loads,
// and the terminal table; probe_report.go writes the JSON and HTML reports.

const probeUsage = `Usage: wsproof probe server URL --key FILE [flags]
       wsproof probe client [flags]

Runs the rules of spec/wsproof-v1.md against a live peer, the way the Autobahn
Testsuite does for WebSocket itself, and reports each case with the spec section
it tests, the outcome the spec requires and the outcome seen. The cases are
those of the Go package github.com/wsproof/wsproof/conformance, which another
implementation can also run from its own "go test".

    probe server   tests a wsproof server from the outside: every negative rule of
                   the response procedure over the wire, plus transport abuse
    probe client   runs a deliberately misbehaving server and checks that a client
                   refuses each bad challenge

Run "wsproof probe server -h" or "wsproof probe client -h" for the flags.

Both print a live progress line and a summary table, and write a JSON report
(--json FILE) and a self-contained HTML report (--html FILE). The exit status is 1
when a case fails.

A negative case checks the exact spec code only when the peer runs in diagnostic
mode (spec section "Diagnostic reasons": "wsproof serve --diagnostic-reasons",
"wsproof connect --diagnostic-reasons") and the probe is told so with
--diagnostic-reasons. Otherwise a case whose close code several codes share
(4003: fourteen codes) is judged on close code and reason text, and its row says
that the exact code was not checked.
`

func (c *cli) probe(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, probeUsage)
		return errUsage
	}
	switch args[0] {
	case "server":
		return c.probeServer(ctx, args[1:])
	case "client":
		return c.probeClient(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stderr, probeUsage)
		return flag.ErrHelp
	}
	return c.unknownSub("probe", args[0], probeUsage)
}

const probeServerUsage = `Usage: wsproof probe server URL --key FILE [flags]

Tests a wsproof server from the outside. Each case opens its own socket, answers
the challenge the server really sent with a response that breaks one rule of the
spec (or abuses the transport), and checks that the server refuses it with the
code of the spec's Errors table, or the HTTP status, that the rule names. Every
malformed message is derived from the live challenge.

After the accept, cases drive the session: messages on the open socket, the
refresh (with --refresh-wait), the keepalive (with --ping-wait), and sockets
the client closes or drops. Each case names the rows of the spec's server
state machine it drives; the report also lists the rows no case drives, and
why (a registry change, the application's behaviour, a shutdown).

The server must know a client key it accepts: --key (registered in a group it
requires). Some cases need further keys registered in a certain way, its
fixtures: --denied-key (registered without that group), and each --fixture
NAME=FILE. Cases whose fixture is missing are skipped, and the table says which
fixture they need.

Flags:
    --key FILE             a client key the server accepts: PEM (PKCS #8, SEC 1,
                           PKCS #1, OpenSSH) or a private JWK
    --kid KID              its key id (default the JWK's kid, else its RFC 7638
                           thumbprint)
    --alg ALG              its registered algorithm (default the JWK's alg, else the
                           only one the key type allows)
    --denied-key FILE      a client key the server knows but denies
    --denied-kid KID       its key id (defaults as for --kid)
    --denied-alg ALG       its algorithm (defaults as for --alg)
    --fixture NAME=FILE    a further client key the server has registered as NAME
                           says; repeatable. NAME is denied (as --denied-key),
                           revoked, not-yet-valid, expired, cb-required (channel
                           binding required, in a required group), expiring (in a
                           required group, valid until a time within 5 minutes of
                           the run's start: "wsproof keys add --not-after"; the
                           final-token cases follow its session to that end),
                           registered (any registered key: the algorithm cases need
                           RS256, PS256 and ES256 ones; repeatable), or
                           unregistered (a key no registry holds; default a fresh
                           one). The key id and algorithm are taken as for --key's
                           defaults
    --server-keys FILE     the server's public key set, as clients pin it (default
                           STATE/server.pub.jwks, as "wsproof connect")
    --identity ID          the server identity (default the URL, normalized, as
                           "wsproof connect")
    --diagnostic-reasons   the server runs in diagnostic mode ("wsproof serve
                           --diagnostic-reasons"): check the exact spec code of
                           every negative case
    --origin ORIGIN        an Origin the server allows: every socket carries it
                           (but those of the Origin cases), and the probe checks
                           that a case variant of it is refused
    --ca FILE              trust the server certificates this CA file (PEM) signs
    --pin HEX              trust exactly the server certificate whose SHA-256 is HEX
    --handshake-timeout D  the server's handshake deadline (default 10s)
    --header-timeout D     the longest the server may take to give up on request
                           headers that never end (default 10s)
    --refresh-wait D       how long to wait for a re-challenge after an accept; 0
                           skips the refresh cases (default 0). The re-challenge is
                           due at the token's exp minus the server's RefreshBefore,
                           at most half the token lifetime the accept shows: a wait
                           of the token lifetime always suffices
    --ping-wait D          how long to wait for the server's first Ping after an
                           accept; 0 skips the keepalive cases (default 0). Those
                           cases take about three Ping intervals
    --parallel N           cases run at once (default 4)
    --rate R               new connections per second at most; 0 for no limit
                           (default 8)
    --run REGEXP           run only the cases whose id matches REGEXP
    --state DIR            state folder (default $WSPROOF_STATE, else $HOME/.wsproof)
    --json FILE            write the JSON report to FILE
    --html FILE            write the HTML report to FILE

All load is bounded in time and count and goes to URL only.
`

func (c *cli) probeServer(ctx context.Context, args []string) error {
	fs := c.newFlags("probe server", probeServerUsage)
	var (
		keyFile    = fs.String("key", "", "")
		kidFlag    = fs.String("kid", "", "")
		algFlag    = fs.String("alg", "", "")
		deniedFile = fs.String("denied-key", "", "")
		deniedKID  = fs.String("denied-kid", "", "")
		deniedAlg  = fs.String("denied-alg", "", "")
		fixtures   listFlag
		serverKeys = fs.String("server-keys", "", "")
		identity   = fs.String("identity", "", "")
		diagnostic = fs.Bool("diagnostic-reasons", false, "")
		origin     = fs.String("origin", "", "")
		caFile     = fs.String("ca", "", "")
		pinHex     = fs.String("pin", "", "")
		hsTimeout  = fs.Duration("handshake-timeout", 10*time.Second, "")
		hdrTimeout = fs.Duration("header-timeout", 10*time.Second, "")
		refresh    = fs.Duration("refresh-wait", 0, "")
		pingWait   = fs.Duration("ping-wait", 0, "")
		parallel   = fs.Int("parallel", 4, "")
		rate       = fs.Float64("rate", 8, "")
		runFlag    = fs.String("run", "", "")
		stateFlag  = fs.String("state", "", "")
		jsonPath   = fs.String("json", "", "")
		htmlPath   = fs.String("html", "", "")
	)
	fs.Var(&fixtures, "fixture", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return c.usageErr(fs, "probe server takes one URL, such as ws://%s/ws", defaultListen)
	case *keyFile == "":
		return c.usageErr(fs, "give a key the server accepts with --key FILE")
	case *caFile != "" && *pinHex != "":
		return c.usageErr(fs, "use either --ca or --pin, not both")
	case *hsTimeout <= 0 || *hdrTimeout <= 0 || *refresh < 0 || *pingWait < 0:
		return c.usageErr(fs, "timeouts must be positive")
	case *parallel < 1 || *parallel > 64:
		return c.usageErr(fs, "--parallel must be between 1 and 64")
	case *rate < 0:
		return c.usageErr(fs, "--rate must not be negative")
	}
	if u, err := url.Parse(pos[0]); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return c.usageErr(fs, "the URL must start with ws:// or wss://, such as ws://%s/ws", defaultListen)
	}
	target := &conformance.ServerTarget{URL: pos[0], Identity: *identity, Diagnostic: *diagnostic, Origin: *origin,
		HandshakeTimeout: *hsTimeout, HeaderTimeout: *hdrTimeout, RefreshWait: *refresh, PingWait: *pingWait}
	if target.Identity == "" {
		if target.Identity, err = protocol.IdentityFromURL(pos[0]); err != nil {
			return c.usageErr(fs, "the URL must start with ws:// or wss://, such as ws://%s/ws", defaultListen)
		}
	}
	if !strings.HasPrefix(pos[0], "wss://") && (*caFile != "" || *pinHex != "") {
		return c.usageErr(fs, "--ca and --pin are for wss:// URLs")
	}
	sel, err := c.probeSelect(fs, *runFlag)
	if err != nil {
		return err
	}
	for _, f := range fixtures {
		name, file, ok := strings.Cut(f, "=")
		if !ok || file == "" {
			return c.usageErr(fs, "--fixture takes NAME=FILE, such as --fixture revoked=revoked.jwk")
		}
		if err := new(conformance.Fixtures).Add(name, conformance.Key{}); err != nil {
			return c.usageErr(fs, "--fixture %s: %s", f, strings.TrimPrefix(err.Error(), "conformance: "))
		}
	}
	key, err := loadProbeKey(*keyFile, *kidFlag, *algFlag)
	if err != nil {
		return err
	}
	target.Key = *key
	if *deniedFile != "" {
		if target.Fixtures.Denied, err = loadProbeKey(*deniedFile, *deniedKID, *deniedAlg); err != nil {
			return err
		}
	}
	for _, f := range fixtures {
		name, file, _ := strings.Cut(f, "=")
		k, err := loadProbeKey(file, "", "")
		if err != nil {
			return err
		}
		target.Fixtures.Add(name, *k) // the name is checked above
	}
	pinnedPath := *serverKeys
	if pinnedPath == "" {
		dir, err := c.stateDir(*stateFlag)
		if err != nil {
			return err
		}
		pinnedPath = filepath.Join(dir, serverPubFile)
	}
	data, err := readSmall(pinnedPath, keys.MaxRegistryFile)
	if err != nil {
		return &userError{fmt.Sprintf("cannot read the server keys %s", pinnedPath), "copy the server's server.pub.jwks there, or pass --server-keys FILE", err}
	}
	if target.ServerKeys, err = keys.ParsePublicSet(data); err != nil {
		return &userError{fmt.Sprintf("cannot load the server keys %s", pinnedPath), "give the server's server.pub.jwks", err}
	}
	if target.TLSConfig, err = c.trustTLS(fs, *caFile, *pinHex); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	n := 0
	for _, cs := range conformance.ServerCases() {
		if sel(cs.ID) {
			n++
		}
	}
	if n == 0 {
		return c.usageErr(fs, "--run %q matches no case", *runFlag)
	}
	c.say("probing %s with %d cases, %d at a time", redact(pos[0]), n, *parallel)
	c.say("  identity     %s", target.Identity)
	c.say("  server keys  %s", pinnedPath)
	prog := newProgress(c.stdout, n)
	rep, err := conformance.RunServer(ctx, target, &conformance.Options{Select: sel, Parallel: *parallel, Rate: *rate, Progress: prog.finish})
	prog.end()
	if err != nil {
		return &userError{"cannot run the probe", "check the URL, --key and --server-keys", err}
	}
	rep.Tool = "wsproof probe server"
	if ctx.Err() != nil {
		c.say("interrupted: the cases not run are reported as skipped")
	}
	return c.finishProbe(rep, *jsonPath, *htmlPath)
}

// redact is a URL without its user information, for messages.
func redact(raw string) string {
	if i := strings.Index(raw, "@"); i >= 0 && strings.Contains(raw[:i], "://") {
		return raw[:strings.Index(raw, "://")+3] + "xxxxx" + raw[i:]
	}
	return raw
}

// probeSelect is the case filter of --run.
func (c *cli) probeSelect(fs *flag.FlagSet, run string) (func(string) bool, error) {
	re, err := regexp.Compile(run) // "" keeps every case
	if err != nil {
		return nil, c.usageErr(fs, "bad --run: %v", err)
	}
	return re.MatchString, nil
}

// loadProbeKey reads a private key with its key id and algorithm, chosen as
// "wsproof connect" chooses them.
func loadProbeKey(path, kidFlag, algFlag string) (*conformance.Key, error) {
	if algFlag != "" {
		if _, err := keys.ParseAlgorithm(algFlag); err != nil {
			return nil, &userError{fmt.Sprintf("unknown algorithm %q", algFlag), "choose one of " + algList(), nil}
		}
	}
	signer, kidHint, algHint, err := readPrivateKey(path)
	if err != nil {
		return nil, err
	}
	alg, err := chooseAlg(signer.Public(), algFlag, algHint)
	if err != nil {
		return nil, err
	}
	kid := kidFlag
	if kid == "" {
		kid = kidHint
	}
	if kid == "" {
		if kid, err = keys.Thumbprint(signer.Public()); err != nil {
			return nil, err
		}
	}
	if err := checkKID(kid); err != nil {
		return nil, &userError{fmt.Sprintf("bad key id %q for %s", kid, filepath.Base(path)), err.Error(), nil}
	}
	return &conformance.Key{ID: kid, Alg: alg, Signer: signer}, nil
}

const probeClientUsage = `Usage: wsproof probe client [flags]

Runs a deliberately misbehaving wsproof server and checks that a client under
test refuses each bad challenge: it must close with the code of the spec's
Errors table that the case names, without sending a response. Each case is one
connection. Point the client under test at

    ws://ADDR/case/NAME   to run the case NAME, or
    ws://ADDR/ws          to run the next case, in order, once per connection

and configure it to pin the printed key set and to expect the printed server
identity, which is not the URL's: a client checks every challenge's iss
against the identity it expects, always. The probe serves ws://, where a
challenge that demands channel binding must be refused; with --tls it serves
wss:// (TLS 1.3) with a certificate from a throwaway CA, written to
STATE/probe-ca.pem for the client to trust ("wsproof connect --ca FILE"),
and every challenge demands tls-exporter binding. Any client key will do: the probe
has no registry, so it checks the structure and bindings of responses (typ,
aud, sid, nonce, cha), not their signature. The probe stops once every case
has run, or after --timeout.

Each case names the rows of the spec's client state machine it drives; the
report also lists the rows that no case drives, and why. A client under test
may send application messages at any time after the accept: no case depends
on its silence.

A test harness for another client (a browser, another language) can start the
probe with --addr-file, then GET http://ADDR/cases.json: the identity, the
pinned key set and, for each case, its URL and the outcome the probe expects.
It connects its client once to each URL, and reads the verdicts from the
--json report when the probe exits.

Flags:
    --listen ADDR       address to listen on (default 127.0.0.1:0)
    --addr-file FILE    write the address actually bound to FILE once listening
    --state DIR         folder for the probe's own server keys: probe-client.jwks and
                        probe-client.pub.jwks, the set the client pins; created once
                        (default $WSPROOF_STATE, else $HOME/.wsproof)
    --identity ID       the server identity the probe's challenges carry (default
                        ws://ADDR/probe, or wss://ADDR/probe with --tls)
    --tls               serve wss:// with a certificate for the --listen host from
                        a new throwaway CA, written to STATE/probe-ca.pem; adds the
                        TLS cases (rows C8 with channel binding)
    --diagnostic-reasons
                        the client runs in diagnostic mode ("wsproof connect
                        --diagnostic-reasons"): check the exact spec code of every
                        negative case
    --client-alg ALG    the client key's algorithm, until a response shows it
                        (default ES256); needed by challenge-alg-not-offered
    --case-timeout D    how long a case waits for the client at each step (default 5s)
    --handshake-wait D  how long the handshake-deadline cases (row C4) wait for the
                        client to give up (default 15s): longer than its deadline
    --ping-wait D       how long the keepalive cases (rows C13, C14, C22) wait for the
                        client's first Ping after the accept; 0 leaves them out of the
                        run (default 0). A browser client cannot ping
    --timeout D         give up waiting for cases after D (default 10m)
    --run REGEXP        run only the cases whose id matches REGEXP
    --run-go-client     drive this repository's Go client (package client) through
                        every case, then exit
    --json FILE         write the JSON report to FILE
    --html FILE         write the HTML report to FILE
`

// State files of probe client.
const (
	probeKeysFile = "probe-client.jwks"
	probePubFile  = "probe-client.pub.jwks"
	probeCAFile   = "probe-ca.pem" // the throwaway CA of the last --tls run
)

func (c *cli) probeClient(ctx context.Context, args []string) error {
	fs := c.newFlags("probe client", probeClientUsage)
	var (
		listen      = fs.String("listen", "127.0.0.1:0", "")
		addrFile    = fs.String("addr-file", "", "")
		stateFlag   = fs.String("state", "", "")
		identity    = fs.String("identity", "", "")
		diagnostic  = fs.Bool("diagnostic-reasons", false, "")
		clientAlg   = fs.String("client-alg", "ES256", "")
		caseTimeout = fs.Duration("case-timeout", 5*time.Second, "")
		hsWait      = fs.Duration("handshake-wait", 15*time.Second, "")
		pingWait    = fs.Duration("ping-wait", 0, "")
		timeout     = fs.Duration("timeout", 10*time.Minute, "")
		runFlag     = fs.String("run", "", "")
		goClient    = fs.Bool("run-go-client", false, "")
		tlsOn       = fs.Bool("tls", false, "")
		jsonPath    = fs.String("json", "", "")
		htmlPath    = fs.String("html", "", "")
	)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "probe client takes no arguments, got %q", pos[0])
	}
	alg, err := keys.ParseAlgorithm(*clientAlg)
	if err != nil {
		return c.usageErr(fs, "unknown algorithm %q: choose one of %s", *clientAlg, algList())
	}
	if *caseTimeout <= 0 || *timeout <= 0 || *hsWait <= 0 || *pingWait < 0 {
		return c.usageErr(fs, "timeouts must be positive")
	}
	sel, err := c.probeSelect(fs, *runFlag)
	if err != nil {
		return err
	}
	dir, err := c.stateDir(*stateFlag)
	if err != nil {
		return err
	}
	sk, pubPath, err := c.probeKeys(dir)
	if err != nil {
		return err
	}
	target := &conformance.ClientTarget{Keys: sk, Identity: *identity, Diagnostic: *diagnostic, ClientAlg: alg,
		CaseTimeout: *caseTimeout, HandshakeWait: *hsWait, PingWait: *pingWait}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return &userError{fmt.Sprintf("cannot listen on %s", *listen), "pick another address with --listen", err}
	}
	addr := ln.Addr().String()
	scheme, caPath := "ws", ""
	var roots *x509.CertPool
	if *tlsOn {
		scheme, caPath = "wss", filepath.Join(dir, probeCAFile)
		host, _, _ := net.SplitHostPort(addr)
		conf, caPEM, err := conformance.ThrowawayTLS(host, "localhost")
		if err == nil {
			err = writeAtomic(caPath, caPEM, 0o644)
		}
		if err != nil {
			ln.Close()
			return &userError{fmt.Sprintf("cannot make the probe's TLS certificate in %s", caPath), "check the state folder's permissions", err}
		}
		target.TLSConfig = conf
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
	}
	urls := conformance.ClientURLs(addr, target, &conformance.Options{Select: sel})
	if len(urls) == 0 {
		ln.Close()
		return c.usageErr(fs, "--run %q matches no case", *runFlag)
	}
	if *addrFile != "" {
		if err := writeAtomic(*addrFile, []byte(addr+"\n"), 0o644); err != nil {
			ln.Close()
			return &userError{fmt.Sprintf("cannot write --addr-file %s", *addrFile), "check the folder exists and is writable", err}
		}
	}
	if target.Identity == "" {
		target.Identity = scheme + "://" + addr + "/probe"
	}
	peer := ""
	if *goClient {
		peer = "Go client (package client)"
		target.Connect = goClientConnect(*caseTimeout, *pingWait, *diagnostic, roots)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c.say("probing clients at %s://%s (%d cases)", scheme, addr, len(urls))
	c.say("  pinned    %s (the server key set the client must pin)", pubPath)
	c.say("  identity  %s (the server identity the client must expect)", target.Identity)
	if caPath != "" {
		c.say("  ca        %s (the CA the client must trust for this run)", caPath)
	}
	if !*goClient {
		c.say("connect the client under test to each URL, or %d times to %s://%s/ws:", len(urls), scheme, addr)
		for _, u := range urls {
			fmt.Fprintf(c.stderr, "    %s\n", u)
		}
	}
	prog := newProgress(c.stdout, len(urls))
	rep, err := conformance.RunClient(ctx, ln, target, &conformance.Options{Select: sel, Progress: prog.finish})
	prog.end()
	if err != nil {
		return err
	}
	rep.Tool = "wsproof probe client"
	if peer != "" {
		rep.Peer = peer
	}
	if ctx.Err() != nil {
		c.say("stopped waiting: the cases not run are reported as skipped")
	}
	return c.finishProbe(rep, *jsonPath, *htmlPath)
}

// goClientConnect is the Connect function of --run-go-client: this
// repository's Go client, which reads until the socket ends, trusting
// roots over TLS.
func goClientConnect(caseTimeout, pingWait time.Duration, diagnostic bool, roots *x509.CertPool) func(context.Context, string, *keys.PublicSet, string) error {
	signer, err := keys.Generate(keys.ES256, nil)
	return func(ctx context.Context, url string, pinned *keys.PublicSet, identity string) error {
		if err != nil {
			return err
		}
		cfg := &client.Config{
			KeyID: "wsproof-probe-go-client", Signer: signer, ServerKeys: pinned, ServerIdentity: identity,
			HandshakeTimeout: caseTimeout, DiagnosticReasons: diagnostic,
			// Pings well within --ping-wait, when the keepalive cases run.
			PingInterval: min(time.Second, pingWait/2),
			TLSConfig:    &tls.Config{RootCAs: roots},
		}
		conn, err := client.Dial(ctx, url, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		for {
			if _, err := conn.Read(ctx); err != nil {
				var ce *client.CloseError
				if errors.As(err, &ce) && ce.Code == 1000 {
					return nil
				}
				return err
			}
		}
	}
}

// probeKeys loads the probe's own server keys from dir, creating them on
// first use (conformance.GenerateServerKeys), so that the set a client
// pins stays the same from one run to the next.
func (c *cli) probeKeys(dir string) (*keys.ServerKeys, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", &userError{fmt.Sprintf("cannot create the state folder %s", dir), "choose another one with --state", err}
	}
	path, pubPath := filepath.Join(dir, probeKeysFile), filepath.Join(dir, probePubFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		sk, err := conformance.GenerateServerKeys()
		if err != nil {
			return nil, "", err
		}
		data, err := keys.MarshalServerKeys(sk)
		if err != nil {
			return nil, "", err
		}
		if _, err := writeNew(path, data, 0o600); err != nil {
			return nil, "", &userError{fmt.Sprintf("cannot write %s", path), "check the state folder's permissions", err}
		}
	}
	data, err := readSmall(path, keys.MaxRegistryFile)
	if err != nil {
		return nil, "", &userError{fmt.Sprintf("cannot read %s", path), "check the state folder's permissions", err}
	}
	sk, err := keys.ParseServerKeys(data)
	if err != nil {
		return nil, "", &userError{fmt.Sprintf("cannot load %s", path), "move it away to create new probe keys", err}
	}
	pub, err := keys.MarshalPublicSet(sk.Public())
	if err != nil {
		return nil, "", err
	}
	if err := writeAtomic(pubPath, pub, 0o644); err != nil {
		return nil, "", &userError{fmt.Sprintf("cannot write %s", pubPath), "check the state folder's permissions", err}
	}
	return sk, pubPath, nil
}

func moduleVersion() string {
	v := "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return v
}

// progress is the live progress line: rewritten in place on a terminal,
// one line per finished case otherwise. Failures always get a line of
// their own, so that they stay visible.
type progress struct {
	w     io.Writer
	tty   bool
	total int

	mu                   sync.Mutex
	done, failed, passed int
	last                 string
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, tty: isTTY(w), total: total}
}

// isTTY reports whether w is a terminal.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) finish(r conformance.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	switch r.Result {
	case conformance.Fail:
		p.failed++
	case conformance.Pass:
		p.passed++
	}
	width := len(fmt.Sprint(p.total))
	count := fmt.Sprintf("[%*d/%d]", width, p.done, p.total)
	if !p.tty {
		fmt.Fprintln(p.w, cell(fmt.Sprintf("%s %s %s (%s)", count, strings.ToUpper(r.Result), r.ID, ms(r.Millis)), tableWidth))
		if r.Result == conformance.Fail {
			wrapped(p.w, "    expected ", "             ", r.Expected)
			wrapped(p.w, "    got      ", "             ", r.Got)
		}
		return
	}
	if r.Result == conformance.Fail {
		fmt.Fprintf(p.w, "\r\x1b[K%s\n", cell("FAIL "+r.ID+": expected "+r.Expected+"; got "+r.Got, tableWidth))
	}
	// One line that fits a narrow terminal, so that \r can rewrite it.
	line := cell(fmt.Sprintf("%s %d passed, %d failed  %s %s", count, p.passed, p.failed, r.Result, r.ID), 79)
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	p.last = line
}

// end clears the progress line on a terminal.
func (p *progress) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.last != "" {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

func ms(n int64) string {
	if n >= 10000 {
		return fmt.Sprintf("%.1f s", float64(n)/1000)
	}
	return fmt.Sprintf("%d ms", n)
}

// tableWidth is the width of the terminal summary: every line of the
// table, the failures, the skips and the rows not driven fits in it.
const tableWidth = 100

// printTable prints the summary of a report in at most tableWidth columns:
// one line per case (result, id, rows, time and what was seen, or why it
// was skipped, shortened), then each failure in full, the reason for each
// skip, the cases whose exact code was not checked, the rows that no case
// drives, and the count. The JSON and HTML reports carry every field in
// full.
func printTable(w io.Writer, rep *conformance.Report) {
	idW, rowsW := len("CASE"), len("ROWS")
	for _, c := range rep.Cases {
		idW = max(idW, len(c.ID))
		rowsW = max(rowsW, len(rowsText(c.Rows)))
	}
	idW, rowsW = min(idW, 40), min(rowsW, 11)
	const resW, timeW = 5, 7
	gotW := tableWidth - (resW + idW + rowsW + timeW + 3 + 2)
	line := func(res, id, rows, t, got string) {
		s := fmt.Sprintf("%-*s %-*s %-*s %*s  %s", resW, res, idW, cell(id, idW), rowsW, cell(rows, rowsW), timeW, t, cell(got, gotW))
		fmt.Fprintln(w, strings.TrimRight(s, " "))
	}
	line("RES", "CASE", "ROWS", "TIME", "GOT")
	var failed, skipped []conformance.Result
	unchecked := map[string]int{}
	for _, c := range rep.Cases {
		got, res := oneLine(c.Got), strings.ToUpper(c.Result)
		switch c.Result {
		case conformance.Fail:
			failed = append(failed, c)
		case conformance.Skip:
			skipped = append(skipped, c)
		}
		if c.CodeNotChecked != "" {
			res += "*"
			unchecked[c.CodeNotChecked]++
		}
		line(res, c.ID, rowsText(c.Rows), ms(c.Millis), got)
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nFailed:\n")
		for _, c := range failed {
			where := c.Section
			if len(c.Rows) > 0 {
				where = "rows " + rowsText(c.Rows) + "; " + where
			}
			wrapped(w, "  ", "    ", c.ID+" ("+where+")")
			wrapped(w, "    expected ", "             ", c.Expected)
			wrapped(w, "    got      ", "             ", c.Got)
			if c.Note != "" {
				wrapped(w, "    note     ", "             ", c.Note)
			}
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "\nSkipped:\n")
		for _, c := range skipped {
			wrapped(w, "  "+c.ID+": ", "      ", c.Note)
		}
	}
	if len(unchecked) > 0 {
		fmt.Fprintf(w, "\n")
		for why, n := range unchecked {
			wrapped(w, "* ", "  ", fmt.Sprintf("%d passing cases checked the close code and reason text, not the exact spec code: %s. "+
				"Run the peer in diagnostic mode and pass --diagnostic-reasons to check it.", n, why))
		}
	}
	if len(rep.NotDriven) > 0 {
		fmt.Fprintf(w, "\nRows not driven remotely:\n")
		for _, g := range rep.NotDriven {
			wrapped(w, "  "+strings.Join(g.Rows, " ")+": ", "      ", g.Reason)
		}
	}
	fmt.Fprintf(w, "\n%d cases: %d passed, %d failed, %d skipped, in %s\n",
		len(rep.Cases), rep.Passed, rep.Failed, rep.Skipped, time.Duration(rep.Millis)*time.Millisecond)
}

// rowsText is a case's rows for the table: "S9 S10 S12".
func rowsText(rows []string) string { return strings.Join(rows, " ") }

// wrapped prints text after first, word-wrapped to tableWidth, its further
// lines after rest. A word longer than a line is cut.
func wrapped(w io.Writer, first, rest, text string) {
	prefix := first
	line := ""
	flush := func() {
		fmt.Fprintln(w, strings.TrimRight(prefix+line, " "))
		prefix, line = rest, ""
	}
	for _, word := range strings.Fields(oneLine(text)) {
		room := tableWidth - utf8.RuneCountInString(prefix)
		word = cell(word, room)
		switch {
		case line == "":
			line = word
		case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) <= room:
			line += " " + word
		default:
			flush()
			line = word
		}
	}
	flush()
}

// cell shortens s to at most n characters for a table column, marking the
// cut with "…".
func cell(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// finishProbe prints the table and writes the reports. It returns an error
// when a case failed, so that the exit status says so.
func (c *cli) finishProbe(rep *conformance.Report, jsonPath, htmlPath string) error {
	rep.Version = moduleVersion()
	rep.Tally()
	printTable(c.stdout, rep)
	if jsonPath != "" {
		if err := writeJSONReport(jsonPath, rep); err != nil {
			return &userError{fmt.Sprintf("cannot write the JSON report %s", jsonPath), "check --json", err}
		}
		fmt.Fprintf(c.stdout, "JSON report: %s\n", jsonPath)
	}
	if htmlPath != "" {
		if err := writeHTMLReport(htmlPath, rep); err != nil {
			return &userError{fmt.Sprintf("cannot write the HTML report %s", htmlPath), "check --html", err}
		}
		fmt.Fprintf(c.stdout, "HTML report: %s\n", htmlPath)
	}
	if rep.Failed > 0 {
		return &userError{fmt.Sprintf("%d of %d probe cases failed", rep.Failed, len(rep.Cases)), "see the table above", nil}
	}
	return nil
}

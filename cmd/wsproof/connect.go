package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

const connectUsage = `Usage: wsproof connect URL (--key FILE | --generate ALG) [flags]

Connects to a wsproof server as a client, in the spirit of wscat. Each line of
standard input is sent as one binary message; each message received is printed
on its own line of standard output (quoted if it is not printable text). The
session is shown on standard error, and the server's re-challenges are answered
without interrupting the stream. When standard input ends, wsproof keeps
printing messages until none has arrived for --wait, then closes the socket.

When the server refuses the key, it says why if it can tell (from the registry
in the state folder, when the server is local) and prints the "wsproof keys add"
command that enrolls the key; with --generate it prints that command first.

Flags:
    --key FILE             the client's private key: PEM (PKCS #8, SEC 1, PKCS #1,
                           OpenSSH) or a private JWK
    --key URI              a key that never leaves a PKCS #11 token (pkcs11:...) or a
                           TPM (tpm:...), as "wsproof keygen --store" prints it
    --ssh-agent [FINGERPRINT]
                           a key of the ssh-agent at $SSH_AUTH_SOCK: the one whose
                           SHA256:... fingerprint is given (ssh-add -l), else the only
                           one; RSA keys sign RS256 only
    --generate ALG         use a new, ephemeral key of algorithm ALG instead, held in
                           memory only; when standard input is a terminal, wsproof
                           waits for Enter before connecting, so that the key can be
                           enrolled with the printed command first
    --kid KID              key id (default the JWK's kid, else the RFC 7638 thumbprint)
    --alg ALG              the key's registered algorithm (default the JWK's alg, else
                           the only one the key type allows; RSA keys need RS256 or PS256)
    --server-keys FILE     the pinned server key set (default STATE/server.pub.jwks)
    --identity ID          the server identity to expect in its challenges (default the
                           URL, normalized: lowercase scheme and host, no default port,
                           no query); a server is found under the URL of its identity
    --ca FILE              trust the server certificates this CA file (PEM) signs
    --pin HEX              trust exactly the server certificate whose SHA-256 is HEX, as
                           "wsproof serve --tls-dev" prints it
    --insecure-allow-unbound
                           over wss://, accept a server that does not bind the session
                           to this TLS connection, for a server behind a proxy that ends
                           TLS; whoever ends this TLS connection (the proxy, or anyone
                           holding a certificate this client accepts) can then relay the
                           handshake and use the session. Without it such servers are
                           refused (channel_binding_required)
    --insecure-plaintext   allow ws:// to a host that is not loopback, for testing: the
                           session and every message travel unencrypted
    --origin ORIGIN        send this Origin header, as a browser would
    --diagnostic-reasons   name the spec code in the reason of every close this client
                           sends, for conformance tests ("wsproof probe client")
    --wait D               after standard input ends, wait this long for more
                           messages (default 1s)
    --sub SUBJECT          subject for the printed enroll command (default $USER@hostname)
    --groups G,...         groups for the printed enroll command
    --state DIR            state folder (default $WSPROOF_STATE, else $HOME/.wsproof)
`

func (c *cli) connect(ctx context.Context, args []string) error {
	fs := c.newFlags("connect", connectUsage)
	var (
		keyFile    = fs.String("key", "", "")
		generate   = fs.String("generate", "", "")
		kidFlag    = fs.String("kid", "", "")
		algFlag    = fs.String("alg", "", "")
		serverKeys = fs.String("server-keys", "", "")
		identity   = fs.String("identity", "", "")
		caFile     = fs.String("ca", "", "")
		pinHex     = fs.String("pin", "", "")
		unbound    = fs.Bool("insecure-allow-unbound", false, "")
		plaintext  = fs.Bool("insecure-plaintext", false, "")
		origin     = fs.String("origin", "", "")
		diagnostic = fs.Bool("diagnostic-reasons", false, "")
		wait       = fs.Duration("wait", time.Second, "")
		sub        = fs.String("sub", "", "")
		stateFlag  = fs.String("state", "", "")
		groups     listFlag
		sshAgent   sshAgentFlag
	)
	fs.Var(&groups, "groups", "")
	fs.Var(&sshAgent, "ssh-agent", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	pos = sshAgent.takeFingerprint(pos)
	sources := 0
	for _, given := range []bool{*keyFile != "", *generate != "", sshAgent.set} {
		if given {
			sources++
		}
	}
	switch {
	case len(pos) != 1:
		return c.usageErr(fs, "connect takes one URL, such as ws://%s/ws", defaultListen)
	case sources != 1:
		return c.usageErr(fs, "give the client key with either --key FILE or --generate ALG, or from a key store with --key pkcs11:...|tpm:... or --ssh-agent")
	case *caFile != "" && *pinHex != "":
		return c.usageErr(fs, "use either --ca or --pin, not both")
	case *wait < 0:
		return c.usageErr(fs, "--wait must not be negative")
	}
	target := pos[0]
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return c.usageErr(fs, "the URL must start with ws:// or wss://, such as ws://%s/ws", defaultListen)
	}
	if u.Scheme == "ws" && (*caFile != "" || *pinHex != "") {
		return c.usageErr(fs, "--ca and --pin are for wss:// URLs")
	}
	if !*plaintext && !protocol.PlaintextAllowed(target) {
		return plaintextError(target)
	}
	if *algFlag != "" {
		if _, err := keys.ParseAlgorithm(*algFlag); err != nil {
			return c.usageErr(fs, "unknown algorithm %q: choose one of %s", *algFlag, algList())
		}
	}

	// The client key.
	var (
		signer  crypto.Signer
		kidHint string
		algHint keys.Algorithm
	)
	if *generate != "" {
		alg, err := keys.ParseAlgorithm(*generate)
		if err != nil {
			return c.usageErr(fs, "unknown algorithm %q: choose one of %s", *generate, algList())
		}
		if signer, err = keys.Generate(alg, nil); err != nil {
			return err
		}
		algHint = alg
		c.say("using a new ephemeral %s key: it lives in memory only and is lost when wsproof exits", alg)
	} else if sshAgent.set || isStoreURI(*keyFile) {
		var sk *storeKey
		if sshAgent.set {
			sk, err = openAgentKey(sshAgent.fp)
		} else {
			sk, err = openStoreKey(*keyFile)
		}
		if err != nil {
			return err
		}
		defer sk.close()
		if err := checkStoreAlg(sk, *algFlag); err != nil {
			return err
		}
		signer, algHint = sk.signer, sk.alg
		c.say("using the key %s", sk.where)
	} else if signer, kidHint, algHint, err = readPrivateKey(*keyFile); err != nil {
		return err
	}
	alg, err := chooseAlg(signer.Public(), *algFlag, algHint)
	if err != nil {
		return err
	}
	thumb, err := keys.Thumbprint(signer.Public())
	if err != nil {
		return err
	}
	kid := *kidFlag
	if kid == "" {
		kid = kidHint
	}
	if kid == "" {
		kid = thumb
	}
	if err := checkKID(kid); err != nil {
		return c.usageErr(fs, "bad key id %q: %v", kid, err)
	}
	enroll, err := enrollCommand(signer.Public(), kid, alg, c.defaultSubject(*sub), groups)
	if err != nil {
		return err
	}
	if *generate != "" {
		// An ephemeral key is enrolled nowhere yet.
		c.say("key %s (%s); to enroll it, run on the server:", kid, alg)
		fmt.Fprintf(c.stderr, "    %s\n", enroll)
	} else {
		c.say("key %s (%s)", kid, alg)
	}
	refused := func() string { return c.keyRefusedHint(*stateFlag, kid, enroll) }

	// The pinned server keys.
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
		return &userError{fmt.Sprintf("cannot read the pinned server keys %s", pinnedPath),
			"copy the server's server.pub.jwks there, or pass --server-keys FILE", err}
	}
	pinned, err := keys.ParsePublicSet(data)
	if err != nil {
		return &userError{fmt.Sprintf("cannot load the pinned server keys %s", pinnedPath),
			"copy the server's server.pub.jwks again", err}
	}

	// Without --identity the client expects the URL's identity; over
	// wss:// it requires channel binding unless --insecure-allow-unbound.
	cfg := &client.Config{
		KeyID:                kid,
		Signer:               signer,
		Algorithm:            alg,
		ServerKeys:           pinned,
		ServerIdentity:       *identity,
		InsecureAllowUnbound: *unbound,
		InsecurePlaintext:    *plaintext,
		DiagnosticReasons:    *diagnostic,
	}
	if *origin != "" {
		cfg.Header = http.Header{"Origin": {*origin}}
	}
	if cfg.TLSConfig, err = c.trustTLS(fs, *caFile, *pinHex); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	stdin := bufio.NewReader(c.stdin)
	if *generate != "" && isTerminal(c.stdin) {
		// An ephemeral key is unknown to every server: give the person the
		// time to enroll it. Connecting is then their decision, not an
		// automatic retry after a terminal failure (spec section "Errors").
		c.say("enroll the key with the command above, then press Enter to connect")
		if _, err := stdin.ReadString('\n'); err != nil {
			return &userError{"standard input ended before Enter", "", nil}
		}
	}
	conn, err := client.Dial(ctx, target, cfg)
	if err != nil {
		return dialError(ctx, err, target, pinnedPath, refused, *identity != "")
	}
	defer conn.Close()
	s := conn.Session()
	c.say("connected to %s", target)
	c.showSession(s)
	return c.chat(ctx, conn, stdin, *wait, target, refused, *identity != "")
}

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// chat sends each line of stdin as one message and prints each message
// received, until the server ends the socket, stdin ends and the socket has
// been quiet for wait, or ctx ends.
func (c *cli) chat(ctx context.Context, conn *client.Conn, stdin io.Reader, wait time.Duration, target string, refused func() string, givenID bool) error {
	type received struct {
		msg []byte
		err error
	}
	in := make(chan received)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			msg, err := conn.Read(rctx)
			select {
			case in <- received{msg, err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	eof := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 4096), 65536)
		for sc.Scan() {
			if err := conn.Write(rctx, sc.Bytes()); err != nil {
				return // the reader reports why the socket ended
			}
		}
		eof <- sc.Err()
	}()

	last := conn.Session()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var idle <-chan time.Time
	for {
		select {
		case r := <-in:
			if r.err != nil {
				return c.ended(ctx, r.err, target, refused, givenID)
			}
			fmt.Fprintln(c.stdout, displayable(r.msg))
			if idle != nil {
				idle = time.After(wait)
			}
		case err := <-eof:
			if err != nil {
				return &userError{"cannot read standard input", "lines are at most 65536 bytes", err}
			}
			idle = time.After(wait)
		case <-idle:
			return c.closeConn(conn)
		case <-tick.C:
			if s := conn.Session(); s != last {
				last = s
				c.say("session refreshed: expires %s", expiry(s.Expiry))
			}
		case <-ctx.Done():
			return c.closeConn(conn)
		}
	}
}

func (c *cli) closeConn(conn *client.Conn) error {
	if err := conn.Close(); err != nil {
		return &userError{"the connection did not close cleanly", "", err}
	}
	return nil
}

// ended explains why the socket ended while the session was open.
func (c *cli) ended(ctx context.Context, err error, target string, refused func() string, givenID bool) error {
	var ce *client.CloseError
	if errors.As(err, &ce) && ce.Code == 1000 {
		c.say("the server closed the connection (1000)")
		return nil
	}
	if ctx.Err() != nil {
		return nil
	}
	return dialError(ctx, err, target, "", refused, givenID)
}

func (c *cli) showSession(s *protocol.ClientSession) {
	groups := "none"
	if len(s.Groups) > 0 {
		qs := make([]string, len(s.Groups))
		for i, g := range s.Groups {
			qs[i] = printable(g)
		}
		groups = strings.Join(qs, ", ")
	}
	binding := "off"
	if s.ChannelBound {
		binding = "on (tls-exporter)"
	}
	c.say("  subject  %s", printable(s.Subject))
	c.say("  groups   %s", groups)
	c.say("  expires  %s", expiry(s.Expiry))
	c.say("  binding  %s", binding)
	c.say("  socket   %s", printable(s.SocketID))
	c.say("  server   key %s", printable(s.ServerKeyID))
}

func expiry(t time.Time) string {
	return fmt.Sprintf("%s (in %s)", t.Local().Format(time.TimeOnly), time.Until(t).Round(time.Second))
}

// displayable returns msg as it is printed: as is when it is printable UTF-8
// text, quoted otherwise, so that a server cannot drive the terminal.
func displayable(msg []byte) string {
	s := string(msg)
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if r != '\t' && !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}

// readPrivateKey reads the client's private key, with the kid and alg of a
// JWK as hints.
func readPrivateKey(path string) (crypto.Signer, string, keys.Algorithm, error) {
	data, err := readSmall(path, maxKeyFile)
	if err != nil {
		return nil, "", "", &userError{fmt.Sprintf("cannot read the key file %s", path), "check --key", err}
	}
	signer, err := keys.ParsePrivateKey(data)
	switch {
	case errors.Is(err, keys.ErrPassphraseRequired):
		return nil, "", "", &userError{fmt.Sprintf("%s is encrypted with a passphrase", path),
			"wsproof connect reads unencrypted keys only; keep the key in a file of mode 0600 instead", nil}
	case err != nil:
		if _, perr := keys.ParsePublicKey(data); perr == nil {
			return nil, "", "", &userError{fmt.Sprintf("%s holds a public key", path), "connect needs the private key (wsproof keygen writes one)", nil}
		}
		return nil, "", "", &userError{fmt.Sprintf("cannot use the key in %s", path),
			"give a private key in PEM (PKCS #8, SEC 1, PKCS #1, OpenSSH) or a private JWK", err}
	}
	kid, alg := jwkHints(data)
	return signer, kid, alg, nil
}

var errPinMismatch = errors.New("the server's certificate does not match --pin")

// trustTLS is the TLS configuration that --ca or --pin asks for, or nil
// without either (the system's roots).
//
// With --pin it trusts exactly the certificate whose SHA-256 is pinHex:
// InsecureSkipVerify turns off the chain and host name checks, and
// VerifyPeerCertificate puts the pin in their place: the leaf certificate
// must be the very one pinned, byte for byte. That is a stronger check than a
// CA's, and the only one possible for a self-signed certificate. TLS still
// proves the server holds that certificate's private key, and no session
// cache is set, so every connection runs a full handshake and meets the pin.
// The wsproof handshake then checks the server's signing key against the
// pinned key set on top of it, and binds the session to this TLS connection.
func (c *cli) trustTLS(fs *flag.FlagSet, caFile, pinHex string) (*tls.Config, error) {
	if caFile != "" {
		pem, err := readSmall(caFile, maxKeyFile)
		if err != nil {
			return nil, &userError{fmt.Sprintf("cannot read the CA file %s", caFile), "check --ca", err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &userError{fmt.Sprintf("%s holds no PEM certificate", caFile), "give the CA certificate that signed the server's, in PEM", nil}
		}
		return &tls.Config{RootCAs: pool}, nil
	}
	if pinHex == "" {
		return nil, nil
	}
	pin, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(pinHex), ":", ""))
	if err != nil || len(pin) != sha256.Size {
		return nil, c.usageErr(fs, `--pin must be the 64 hex digits of a SHA-256, as "wsproof serve --tls-dev" prints it`)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errPinMismatch
			}
			sum := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return errPinMismatch
			}
			return nil
		},
	}, nil
}

// plaintextError refuses a ws:// URL whose host is not loopback (spec
// section "Opening handshake").
func plaintextError(target string) error {
	return &userError{fmt.Sprintf("refusing to connect to %s without TLS", redactURL(target)),
		"the session and every message would cross the network unencrypted; use wss://, or pass --insecure-plaintext for testing", nil}
}

// identityError explains an audience_mismatch: the server's challenge names
// another identity than the one this client expects, the URL dialed unless
// --identity was given. A server is found under the URL of its identity, and
// "wsproof serve" listens on 127.0.0.1 with the identity ws://127.0.0.1:PORT/ws,
// so a person who dials localhost meets this first.
func identityError(code protocol.Code, ie *protocol.IdentityError, givenID bool) error {
	got, want := printable(ie.Got), printable(ie.Want)
	expected := want + ", the identity of the URL dialed"
	if givenID {
		expected = want + ", given with --identity"
	}
	hint := fmt.Sprintf("the server's identity is %s, but this client expected %s; ", got, expected)
	if id, err := protocol.IdentityFromURL(ie.Got); err == nil && id == ie.Got {
		hint += fmt.Sprintf("connect to %s instead or, if that is the server you mean to reach at this URL, pass --identity %s", got, shellQuote(ie.Got))
	} else {
		hint += fmt.Sprintf("if that is the server you mean to reach, pass --identity %s", shellQuote(ie.Got))
	}
	return &userError{codeLabel(code), hint, nil}
}

// dialError explains a failed connection in one line: what happened, the
// spec code when there is one, and what to do. refused says what to do when
// the server refuses the key; givenID says whether the expected server
// identity came from --identity.
func dialError(ctx context.Context, err error, target, pinnedPath string, refused func() string, givenID bool) error {
	if ctx.Err() != nil {
		return &userError{"interrupted", "", nil}
	}
	if errors.Is(err, client.ErrPlaintext) {
		return plaintextError(target)
	}
	var ie *protocol.IdentityError
	if code := protocol.CodeOf(err); code == protocol.CodeAudienceMismatch && errors.As(err, &ie) {
		return identityError(code, ie, givenID)
	}
	if pinnedPath == "" {
		pinnedPath = "the pinned server keys"
	}
	var ce *client.CloseError
	if errors.As(err, &ce) {
		switch {
		case ce.Code == protocol.CodeUnknownKey.CloseCode():
			return &userError{fmt.Sprintf("authentication failed (%d)", ce.Code), refused(), nil}
		case ce.Spec != "":
			return &userError{codeLabel(ce.Spec), codeHint(ce.Spec, pinnedPath), nil}
		case ce.Code == 1001:
			return &userError{"the server is going away (1001)", "it is shutting down or restarting; connect again later", nil}
		case ce.Code == 1006:
			return &userError{"the connection broke (1006)", "check the network and the server, then connect again", nil}
		}
		return &userError{fmt.Sprintf("the server closed the connection (%d)", ce.Code), "", nil}
	}
	if code := protocol.CodeOf(err); code != "" {
		return &userError{codeLabel(code), codeHint(code, pinnedPath), nil}
	}
	if errors.Is(err, errPinMismatch) {
		return &userError{"the server's TLS certificate does not match --pin", "check the pin \"wsproof serve --tls-dev\" printed; if it changed, the server's certificate was replaced", nil}
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return certError(cv)
	}
	var ue *client.UpgradeError
	if errors.As(err, &ue) && !ue.Wsproof {
		hint := "check the URL: it should be a wsproof endpoint such as ws://HOST:7700/ws"
		if strings.HasPrefix(target, "ws://") && speaksTLS(ctx, target) {
			hint = "that port speaks TLS: use " + "wss://" + strings.TrimPrefix(target, "ws://")
		}
		return &userError{fmt.Sprintf("%s refused the upgrade with HTTP %d, and not as a wsproof server does", target, ue.Status), hint, nil}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return &userError{fmt.Sprintf("cannot connect to %s", target), "check the URL and that the server is running", err}
	}
	return &userError{fmt.Sprintf("cannot connect to %s", target), "check the URL", err}
}

// codeHint is the plain sentence that says what to do after a failure with
// code, as the client meets it.
func codeHint(code protocol.Code, pinnedPath string) string {
	switch code {
	case protocol.CodeUnknownKey:
		return "the server's challenge is signed by a key that is not in " + pinnedPath + "; copy the server's server.pub.jwks, or check the URL"
	case protocol.CodeBadSignature, protocol.CodeAlgMismatch:
		return "the challenge does not verify with the key pinned in " + pinnedPath + "; this may not be the server you pinned, so check the URL"
	case protocol.CodeAudienceMismatch:
		return "the server's identity is not the one expected; connect to the URL of the server's identity, or pass it with --identity"
	case protocol.CodeChallengeExpired, protocol.CodeTokenExpired:
		return "check that this machine's clock agrees with the server's, then connect again"
	case protocol.CodeChannelBindingRequired:
		return "the server does not bind the session to this TLS connection (TLS ends at a proxy in front of it, the endpoint serves browsers, or the connection is not TLS 1.3); " +
			"connect to an endpoint that binds, or, if TLS ends at a proxy you trust, pass --insecure-allow-unbound, which lets whoever ends this TLS connection use the session"
	case protocol.CodeChannelBindingMismatch:
		return "the TLS connection is not the one the server sees, so a proxy may be in between; connect to the server directly"
	case protocol.CodeAlgNotAllowed:
		return "the server does not accept this key's algorithm; generate a key with an algorithm it accepts"
	case protocol.CodeHandshakeTimeout:
		return "the handshake did not finish in time; check the URL and the network, then try again"
	case protocol.CodeSessionRevoked:
		return "the server no longer accepts this key (revoked, removed or its groups changed); ask the server's operator"
	case protocol.CodeRateLimited:
		return "the server is busy; try again in a moment"
	case protocol.CodeInternalError:
		return "a party failed internally; try again"
	case protocol.CodeOriginNotAllowed:
		return "the server does not allow this Origin; drop --origin, or allow it with \"wsproof serve --origin\""
	case protocol.CodeSubprotocolRequired:
		return "the server wants the wsproof.v1 subprotocol; check that the URL is a wsproof endpoint"
	case protocol.CodeBadKey:
		return "check the key files"
	}
	return "the server does not speak wsproof v1 as this client does; check the URL and the server's version"
}

// keyRefusedHint says what to do when the server refused the key with close
// code 4003. The server does not say which check failed (spec section
// "Uniform denials and kid enumeration"), but the registry in the state
// folder, when there is one here (the server runs on this machine, as in
// the walk-through), does: the key is missing, revoked, or outside its
// validity window.
func (c *cli) keyRefusedHint(stateFlag, kid, enroll string) string {
	generic := "the server refused this key: it is not enrolled, revoked, expired, or not in a group the server " +
		"requires (the server does not say which); if it is not enrolled, run on the server: " + enroll
	dir, err := c.stateDir(stateFlag)
	if err != nil {
		return generic
	}
	path := filepath.Join(dir, registryFile)
	reg, err := keys.OpenFile(path)
	if err != nil {
		return generic
	}
	e, ok := reg.Lookup(kid)
	switch {
	case !ok:
		return fmt.Sprintf("the key %s is not enrolled in %s; enroll it with: %s", kid, path, enroll)
	case e.Revoked:
		return fmt.Sprintf("the key %s is revoked in %s; a revoked key stays revoked: make a new key with \"wsproof keygen\" and enroll that", kid, path)
	case !e.ValidAt(time.Now()):
		return fmt.Sprintf("the key %s is outside its validity window in %s (%s); ask the operator to update it", kid, path, window(e))
	}
	return fmt.Sprintf("the key %s is enrolled in %s (subject %q, groups %s), so the server requires a group it is not in (--required-group), or uses another registry, or has not reloaded it yet (it does within a second of a change); ask its operator",
		kid, path, e.Subject, strings.Join(e.Groups, ","))
}

// certError explains a server certificate the client did not accept, by
// what is wrong with it: expired, for another name, or from an unknown CA.
func certError(cv *tls.CertificateVerificationError) error {
	var inv x509.CertificateInvalidError
	var host x509.HostnameError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(cv.Err, &inv) && inv.Reason == x509.Expired:
		leaf := inv.Cert
		return &userError{fmt.Sprintf("the server's TLS certificate is not valid now (valid %s to %s)",
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)),
			"the server must renew it; if it is current, check this machine's clock", nil}
	case errors.As(cv.Err, &host):
		return &userError{"the server's TLS certificate is for another name", "check the host in the URL: " + host.Error(), nil}
	case errors.As(cv.Err, &ua):
		return &userError{"cannot verify the server's TLS certificate: no trusted CA signed it",
			"pass --ca FILE with the CA that signed it, or --pin HEX for a \"wsproof serve --tls-dev\" server", nil}
	}
	return &userError{"cannot verify the server's TLS certificate", "check --ca or --pin", cv.Err}
}

// speaksTLS reports whether the host and port of a ws:// URL complete a TLS
// handshake: a server that answered a plaintext upgrade with HTTP 400 may
// simply be a wss:// server. The certificate is not checked; the handshake
// only tells the protocol, and nothing is sent over it.
func speaksTLS(ctx context.Context, target string) bool {
	u, err := url.Parse(target)
	if err != nil {
		return false
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} // probing the protocol, not trusting the peer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// window is an entry's validity window for a person: "from T1 to T2", with
// an open side left out.
func window(e *keys.Entry) string {
	var parts []string
	if !e.NotBefore.IsZero() {
		parts = append(parts, "from "+e.NotBefore.UTC().Format(time.RFC3339))
	}
	if !e.NotAfter.IsZero() {
		parts = append(parts, "until "+e.NotAfter.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, " ")
}

// Command wsproof-device is a small device program built on package client,
// and the program the device test runs on every device architecture under
// emulation (issue 15): it keeps a wsproof connection up with client.Keep,
// sends a reading at a steady pace and checks that the server echoes it,
// notices each refresh of the session, and reports on standard output each
// step, one line each, so that a test (or a person) can follow it:
//
//	connected n=1 sub=SUBJECT exp=UNIX   (each accepted connection, counted)
//	echo n=1                             (the first echo on connection n)
//	refreshed n=1 exp=UNIX               (the session was refreshed, and an echo came back after it)
//	ended n=1 close=1001 retryable=yes   (connection n ended: the close code and the spec's Retry)
//	stopped close=4011 error=...         (Keep gave up: a terminal end; exit status 1)
//
// Keep reconnects, with backoff, after the ends that spec section "Retry"
// marks retryable (the server going away with 1001, a lost connection,
// token_expired, ...) and stops after the others (session_revoked, any
// authentication failure, 1000). With -once the program dials once and
// reads until the socket ends instead, which is what a conformance probe
// ("wsproof probe client") drives.
//
// Usage:
//
//	wsproof-device -key KEY.pem -kid KID -server-keys SERVER.pub.jwks [flags] URL
//
// The server's application must echo each message: the same bytes, or
// "echo: " and the message, as "wsproof serve" answers.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

const usage = `Usage: wsproof-device -key FILE -kid KID -server-keys FILE [flags] URL

Keeps a wsproof connection to URL up (client.Keep), sends a reading every
-every and checks its echo, and prints each step on standard output:
connected, echo, refreshed, ended (with the close code and whether spec
section "Retry" lets the client reconnect) and stopped.

Flags:
    -key FILE              the device's private key: PEM or a private JWK
    -kid KID               its key id in the server's registry
    -server-keys FILE      the server's public key set (JWKS) to pin
    -identity ID           the server identity its challenges must name
                           (default: the URL's)
    -every D               how often to send a reading (default 1s)
    -handshake-timeout D   bound on each handshake, from the TCP connection to the
                           server's accept (default 10s)
    -once                  dial once and read until the socket ends, without
                           sending: for a conformance probe
    -diagnostic-reasons    name the spec code in every Close frame's reason,
                           for a conformance probe
    -insecure-plaintext    allow ws:// to a host that is not loopback (testing)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsproof-device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { io.WriteString(stderr, usage) }
	var (
		keyFile    = fs.String("key", "", "")
		kid        = fs.String("kid", "", "")
		serverKeys = fs.String("server-keys", "", "")
		identity   = fs.String("identity", "", "")
		every      = fs.Duration("every", time.Second, "")
		hsTimeout  = fs.Duration("handshake-timeout", 0, "")
		once       = fs.Bool("once", false, "")
		diagnostic = fs.Bool("diagnostic-reasons", false, "")
		plaintext  = fs.Bool("insecure-plaintext", false, "")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 || *keyFile == "" || *kid == "" || *serverKeys == "" || *every <= 0 || *hsTimeout < 0 {
		io.WriteString(stderr, usage)
		return 2
	}
	cfg, err := config(*keyFile, *kid, *serverKeys)
	if err != nil {
		fmt.Fprintln(stderr, "wsproof-device:", err)
		return 1
	}
	cfg.ServerIdentity, cfg.DiagnosticReasons, cfg.InsecurePlaintext = *identity, *diagnostic, *plaintext
	cfg.HandshakeTimeout = *hsTimeout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &device{out: stdout, every: *every}
	if *once {
		err = d.once(ctx, fs.Arg(0), cfg)
	} else {
		err = client.Keep(ctx, fs.Arg(0), cfg, nil, d.session)
	}
	if ctx.Err() != nil {
		d.say("stopped interrupted")
		return 0
	}
	if err != nil {
		d.say("stopped%s error=%q", closeText(err), err.Error())
		return 1
	}
	d.say("stopped")
	return 0
}

// config reads the device's key and the pinned server key set.
func config(keyFile, kid, serverKeys string) (*client.Config, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	signer, err := keys.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	data, err = os.ReadFile(serverKeys)
	if err != nil {
		return nil, err
	}
	set, err := keys.ParsePublicSet(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", serverKeys, err)
	}
	return &client.Config{KeyID: kid, Signer: signer, ServerKeys: set}, nil
}

// device is the program's state across the connections of one Keep.
type device struct {
	out   io.Writer
	every time.Duration
	n     int // connections accepted so far
}

func (d *device) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

// echoTimeout bounds the wait for each echo.
const echoTimeout = 10 * time.Second

// session is Keep's fn: one accepted connection. It returns the Conn's
// error when the socket ends, so that Keep decides from it whether to
// reconnect, or an error of its own (a wrong or missing echo), which stops
// Keep.
func (d *device) session(ctx context.Context, c *client.Conn) error {
	d.n++
	s := c.Session()
	d.say("connected n=%d sub=%s exp=%d", d.n, s.Subject, s.Expiry.Unix())
	for seq := 1; ; seq++ {
		msg := []byte("reading " + strconv.Itoa(seq))
		if err := c.Write(ctx, msg); err != nil {
			return d.ended(ctx, err)
		}
		rctx, cancel := context.WithTimeout(ctx, echoTimeout)
		got, err := c.Read(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && rctx.Err() != nil:
			return fmt.Errorf("no echo of %q within %s", msg, echoTimeout)
		case err != nil:
			return d.ended(ctx, err)
		case !bytes.Equal(got, msg) && !bytes.Equal(got, append([]byte("echo: "), msg...)):
			return fmt.Errorf("echo %q of %q", got, msg)
		}
		if seq == 1 {
			d.say("echo n=%d", d.n)
		}
		if cur := c.Session(); cur != s {
			s = cur
			d.say("refreshed n=%d exp=%d", d.n, s.Expiry.Unix())
		}
		// Wait for the next reading's time on Read, which returns at once
		// when the socket ends.
		wctx, cancel := context.WithTimeout(ctx, d.every)
		got, err = c.Read(wctx)
		cancel()
		switch {
		case err == nil:
			return fmt.Errorf("unexpected message %q", got)
		case ctx.Err() == nil && wctx.Err() != nil:
		default:
			return d.ended(ctx, err)
		}
	}
}

// ended reports the end of connection n and returns err unchanged.
func (d *device) ended(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		d.say("ended n=%d%s retryable=%s", d.n, closeText(err), yesNo(retryable(err)))
	}
	return err
}

// once dials once and reads until the socket ends: a conformance probe's
// case. A normal closure by the server is success.
func (d *device) once(ctx context.Context, url string, cfg *client.Config) error {
	c, err := client.Dial(ctx, url, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	d.n++
	d.say("connected n=%d sub=%s exp=%d", d.n, c.Session().Subject, c.Session().Expiry.Unix())
	for {
		if _, err := c.Read(ctx); err != nil {
			if ce, ok := errors.AsType[*client.CloseError](err); ok && ce.Code == 1000 {
				return nil
			}
			return d.ended(ctx, err)
		}
	}
}

// closeText is " close=CODE" for an end with a close code: the server's
// (a *client.CloseError) or the one the client sent (a spec code it
// detected); "" otherwise.
func closeText(err error) string {
	if ce, ok := errors.AsType[*client.CloseError](err); ok {
		return " close=" + strconv.Itoa(ce.Code)
	}
	if code := protocol.CodeOf(err); code != "" && code.CloseCode() != 0 {
		return " close=" + strconv.Itoa(code.CloseCode()) + " code=" + string(code)
	}
	return ""
}

// retryable is what spec section "Retry" says of the end err, as far as the
// error tells (Keep itself asks the client's state machine).
func retryable(err error) bool {
	if ce, ok := errors.AsType[*client.CloseError](err); ok {
		return ce.Retryable()
	}
	code := protocol.CodeOf(err)
	return code != "" && code.Retryable()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

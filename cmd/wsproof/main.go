// Command wsproof runs a wsproof server, generates client keys, edits the key
// registry, connects as a client, and checks the test vectors of
// spec/wsproof-v1.md.
//
//	wsproof serve                       run a server (creates the state folder)
//	wsproof keygen                      generate a client key
//	wsproof keys add|list|revoke|import edit the key registry
//	wsproof server-keys ...             rotate the server's keys
//	wsproof db migrate|audit            the PostgreSQL registry (fleet mode)
//	wsproof connect URL --key FILE      talk to a server over standard input
//	wsproof vectors check|generate      run or write the test vectors
//	wsproof version
//
// The state folder (--state, else $WSPROOF_STATE, else $HOME/.wsproof, mode
// 0700) holds:
//
//	server.jwks      the server's signing key and session-token key (mode 0600)
//	server.pub.jwks  the public signing keys, which clients pin
//	registry.jwks    the client keys the server accepts (spec section "Key registry")
//	tls-dev.crt/key  the self-signed certificate of "serve --tls-dev"
//	id_<alg>.pem     client keys written by "keygen" without --out
//
// No command overwrites a key file or the server's state; "keys" edits the
// registry by replacing it atomically, so that a running server reloads one
// complete file. Errors are one line: what failed, the spec's error code when
// there is one, and what to do.
//
// The command is thin: the protocol lives in package protocol, keys and the
// registry in package keys, the transport in packages server and client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const usage = `wsproof authenticates WebSocket clients by proof of possession of a private key.

Usage:
    wsproof serve [flags]                     run a server (creates its state folder on first run)
    wsproof keygen [--alg ES256] [--out FILE] [--jwk]
                                              generate a client key
    wsproof keys add|list|revoke|import       edit the key registry
    wsproof server-keys list|add|promote|retire|public|token-keys
                                              manage and rotate the server's own keys
    wsproof db migrate|audit                  the PostgreSQL registry of fleet mode
    wsproof connect URL --key FILE [flags]    connect as a client; stdin lines become messages
    wsproof vectors check [FILE]              run the test vectors
    wsproof probe server URL | probe client   test a live server or client against the spec
    wsproof vectors generate DIR              write freshly generated test vectors
    wsproof version                           print the version

Run "wsproof COMMAND -h" for the flags of a command.

The state folder is --state DIR, else $WSPROOF_STATE, else $HOME/.wsproof. It holds
server.jwks (the server's private keys), server.pub.jwks (the public keys clients pin)
and registry.jwks (the client keys the server accepts).
`

func main() {
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(c.run(context.Background(), os.Args[1:]))
}

// cli holds what a command reads and writes, so that commands never touch
// the process's globals directly.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// run runs the command named by args[0] and returns the exit code: 0 on
// success, 1 on failure, 2 on a usage error.
func (c *cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string) error{
		"serve":       c.serve,
		"keygen":      c.keygen,
		"keys":        c.keys,
		"server-keys": c.serverKeys,
		"db":          c.db,
		"connect":     c.connect,
		"vectors":     c.vectors,
		"probe":       c.probe,
		"version":     c.version,
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(c.stderr, "wsproof: unknown command %q: run \"wsproof help\" for the list of commands\n", name)
		return 2
	}
	err := cmd(ctx, rest)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(c.stderr, "wsproof: %s\n", explain(err))
	var exit *exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	return 1
}

// errUsage reports a usage error that has already been printed.
var errUsage = errors.New("usage error")

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// newFlags returns a flag set whose errors and help go to stderr, with the
// given usage text.
func (c *cli) newFlags(name, text string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() { fmt.Fprint(c.stderr, text) }
	return fs
}

// parse parses args with fs, allowing flags after positional arguments
// ("wsproof connect URL --key FILE"). It returns the positional arguments.
// A parse error has been printed already and is returned as errUsage, or as
// flag.ErrHelp for -h.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageErr prints msg and the usage text of fs and returns errUsage.
func (c *cli) usageErr(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(c.stderr, "wsproof: "+format+"\n\n", args...)
	fs.Usage()
	return errUsage
}

// listFlag is a flag that may be repeated; each value may also be a
// comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// stateDir returns the state folder: flagValue, else $WSPROOF_STATE, else
// $HOME/.wsproof.
func (c *cli) stateDir(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if d := c.getenv("WSPROOF_STATE"); d != "" {
		return d, nil
	}
	home := c.getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", &userError{"cannot find the state folder", "set $WSPROOF_STATE or pass --state DIR", nil}
		}
	}
	return filepath.Join(home, ".wsproof"), nil
}

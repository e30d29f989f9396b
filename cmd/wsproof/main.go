// Command wsproof runs a wsproof server, generates client keys, edits the key
// registry, connects as a client, and checks the test vectors of
// spec/wsproof-v1.md.
//
//	wsproof serve                       run a server (creates the state folder)
//	wsproof keygen                      generate a client key
//	wsproof keys add|list|show|update|revoke|remove|import
//	                                    edit the key registry
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
	"regexp"
	"strings"
)

const usage = `wsproof authenticates WebSocket clients by proof of possession of a private key.

Usage:
    wsproof serve [flags]                     run a server (creates its state folder on first run)
    wsproof keygen [--alg ES256] [--out FILE] [--jwk]
                                              generate a client key
    wsproof keys add|list|show|update|revoke|remove|import
                                              edit the key registry
    wsproof server-keys list|add|promote|retire|public|token-keys
                                              manage and rotate the server's own keys
    wsproof db migrate|audit                  the PostgreSQL registry of fleet mode
    wsproof connect URL --key FILE [flags]    connect as a client; stdin lines become messages
    wsproof vectors check [FILE]              run the test vectors
    wsproof probe server URL | probe client   test a live server or client against the spec
    wsproof vectors generate DIR              write freshly generated test vectors
    wsproof version                           print the version (also --version)
    wsproof completion bash|zsh|fish          print a shell completion script

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

	// flagSets, when set, receives every flag set a command makes: shell
	// completion learns the flags from the commands themselves.
	flagSets *[]*flag.FlagSet
}

// commands lists the commands, in the order help shows them, and the
// subcommands of those that have them. Dispatch suggestions and shell
// completion read it; TestCommandTable checks it against the dispatchers.
var commands = []struct {
	name string
	subs []string
}{
	{"serve", nil},
	{"keygen", nil},
	{"keys", []string{"add", "list", "show", "update", "revoke", "remove", "import"}},
	{"server-keys", serverKeysCommands},
	{"db", []string{"migrate", "audit"}},
	{"connect", nil},
	{"vectors", []string{"check", "generate"}},
	{"probe", []string{"server", "client"}},
	{"version", nil},
	{"completion", []string{"bash", "zsh", "fish"}},
	{"help", nil},
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
		"completion":  c.completion,
		completeCmd:   c.complete,
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usage)
		return 0
	case "--version", "-version":
		name = "version"
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(c.stderr, "wsproof: unknown command %q%s: run \"wsproof help\" for the list of commands\n",
			name, didYouMean(name, commandNames()))
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

// newFlags returns a flag set named name ("keys add") whose help, the
// given usage text, goes to stderr. Its usage text begins with the
// command's synopsis, up to the first blank line: parse and usageErr print
// only that on an error, and the whole text only for -h.
func (c *cli) newFlags(name, text string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), text) }
	if c.flagSets != nil {
		*c.flagSets = append(*c.flagSets, fs)
	}
	return fs
}

// parse parses args with fs, allowing flags after positional arguments
// ("wsproof connect URL --key FILE"). It returns the positional arguments.
// A parse error has been printed already, as one line naming the flag, a
// suggestion when a defined flag is close to a mistyped one, and the
// command's synopsis, and is returned as errUsage; -h prints the whole
// usage text and returns flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, _, err := parseArgs(fs, args, false)
	return pos, err
}

// parseArgs is parse. With lenient, the first argument that the flag
// package refuses as an undefined flag ("-x", "--x=y", "---x") is taken as
// a positional argument instead, and its error returned as flagErr, for the
// caller to report if the argument turns out not to be one.
func parseArgs(fs *flag.FlagSet, args []string, lenient bool) (pos []string, flagErr, err error) {
	for {
		if err := parseQuiet(fs, args); err != nil {
			if arg, rest, ok := undefinedFlag(err, args, fs.Args()); ok && lenient {
				if flagErr == nil {
					pos, args, flagErr = append(pos, arg), rest, err
					continue
				}
				if len(pos) > 1 {
					// "--regsitry FILE -KID": the first one took a value.
					err = flagErr
				}
			}
			return nil, nil, parseFailed(fs, err)
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), flagErr, nil
		}
		if len(rest) == 0 {
			return pos, flagErr, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// undefinedFlag returns the argument that caused err, an error of
// fs.Parse(args) that left rest unparsed, and the arguments after it, if err
// is about an argument that is no flag of the set.
func undefinedFlag(err error, args, rest []string) (string, []string, bool) {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "flag provided but not defined: ") && len(rest) < len(args):
		// The flag package has consumed the argument.
		return args[len(args)-len(rest)-1], rest, true
	case strings.HasPrefix(msg, "bad flag syntax: ") && len(rest) > 0:
		// It has not.
		return rest[0], rest[1:], true
	}
	return "", nil, false
}

// parseFailed reports err, an error of parseQuiet, as parse does, and
// returns flag.ErrHelp or errUsage.
func parseFailed(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	// The flag package names flags with one dash; the usage texts, and so
	// the reader, use two.
	msg := flagName.ReplaceAllString(err.Error(), "$1--$2")
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
		msg += didYouMean("--"+name, names)
	}
	fmt.Fprintf(fs.Output(), "wsproof %s: %s\n", fs.Name(), msg)
	shortUsage(fs)
	return errUsage
}

// flagName finds the flag package's "-name" in its error messages.
var flagName = regexp.MustCompile(`(\s)-([[:alnum:]])`)

// parseQuiet is fs.Parse without the flag package's own printing: parse
// reports errors in its own words.
func parseQuiet(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()
	return fs.Parse(args)
}

// usageErr prints msg and the synopsis of fs and returns errUsage.
func (c *cli) usageErr(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(c.stderr, "wsproof: "+format+"\n", args...)
	shortUsage(fs)
	return errUsage
}

// shortUsage prints the synopsis of fs's usage text (up to its first blank
// line) and where the rest is: after a mistake, the flags are one -h away,
// not sixty lines in the way of the error.
func shortUsage(fs *flag.FlagSet) {
	var b strings.Builder
	out := fs.Output()
	fs.SetOutput(&b)
	fs.Usage()
	fs.SetOutput(out)
	synopsis, _, _ := strings.Cut(b.String(), "\n\n")
	fmt.Fprintf(out, "\n%s\n\nRun \"wsproof %s -h\" for the flags.\n", synopsis, fs.Name())
}

// commandNames is the names of the commands, for suggestions.
func commandNames() []string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return names
}

// unknownSub reports an unknown subcommand of group, with a suggestion
// from its subcommands (the commands table), and prints the group's usage
// synopsis.
func (c *cli) unknownSub(group, sub, text string) error {
	var subs []string
	for _, cmd := range commands {
		if cmd.name == group {
			subs = cmd.subs
		}
	}
	synopsis, _, _ := strings.Cut(text, "\n\n")
	fmt.Fprintf(c.stderr, "wsproof: unknown %s command %q%s\n\n%s\n\nRun \"wsproof %s -h\" for the commands.\n",
		group, sub, didYouMean(sub, subs), synopsis, group)
	return errUsage
}

// didYouMean returns ` (did you mean "x"?)` for the candidate closest to
// typed, if one is close enough to be a typo (at most two edits, and fewer
// than half the word) or typed is a prefix of exactly one; else "".
func didYouMean(typed string, candidates []string) string {
	best, bestD := "", 3
	var prefixed []string
	for _, c := range candidates {
		if len(typed) >= 2 && strings.HasPrefix(c, typed) {
			prefixed = append(prefixed, c)
		}
		if d := editDistance(typed, c); d < bestD && 2*d < max(len(typed), len(c)) {
			best, bestD = c, d
		}
	}
	if best == "" && len(prefixed) == 1 {
		best = prefixed[0]
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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

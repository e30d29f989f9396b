package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/wsproof/wsproof/keys"
)

const serverKeysUsage = `Usage: wsproof server-keys COMMAND [flags]

Manages the server's own key file: its signing keys (which sign challenges and
tokens) and token keys (which encrypt tokens), current first. Every node that
serves one identity holds the same file (spec section "Server keys, key ids
and rotation"); "wsproof serve" reloads it when it changes.

Rotation is three steps, each done on every node before the next:

    wsproof server-keys add --signing          1. publish: a new key after the current one
    wsproof server-keys public --out FILE         (signing keys: give FILE to every client)
    wsproof server-keys promote KID            2. switch: make KID current
    wsproof server-keys retire OLD-KID         3. retire, once the longest token lifetime has passed

Commands:
    init                        create a new key file (an ES256 signing key, a dir token key)
    list                        list the keys, current first
    add --signing [--alg ALG]   append a new signing key (default ES256)
    add --token [--alg ALG]     append a new token key (dir or A256KW; default dir)
    promote KID                 make KID the current key of its kind
    retire KID                  remove KID (never the current key)
    public [--out FILE]         write the public key set clients pin (default stdout)
    token-keys --out FILE       write the token keys alone, for backends that check
                                tokens with the public key set (mode 0600)

Flags:
    --file FILE    the server key file (default STATE/server.jwks)
    --state DIR    state folder (default $WSPROOF_STATE, else $HOME/.wsproof)

Files are replaced atomically, so a running server reads either the old file
or the new one.
`

// serverKeysCommands are the subcommands of server-keys.
var serverKeysCommands = []string{"init", "list", "add", "promote", "retire", "public", "token-keys"}

func (c *cli) serverKeys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, serverKeysUsage)
		return errUsage
	}
	sub := args[0]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		fmt.Fprint(c.stdout, serverKeysUsage)
		return nil
	}
	if !slices.Contains(serverKeysCommands, sub) {
		return c.unknownSub("server-keys", sub, serverKeysUsage)
	}
	fs := c.newFlags("server-keys "+sub, serverKeysUsage)
	var (
		file    = fs.String("file", "", "")
		state   = fs.String("state", "", "")
		signing = fs.Bool("signing", false, "")
		token   = fs.Bool("token", false, "")
		alg     = fs.String("alg", "", "")
		out     = fs.String("out", "", "")
	)
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	wantArgs := 0
	if sub == "promote" || sub == "retire" {
		wantArgs = 1
	}
	if len(pos) != wantArgs {
		return c.usageErr(fs, "server-keys %s takes %d argument(s), got %d", sub, wantArgs, len(pos))
	}
	path := *file
	if path == "" {
		dir, err := c.stateDir(*state)
		if err != nil {
			return err
		}
		path = filepath.Join(dir, serverKeysFile)
	}
	if sub == "init" {
		sk, err := generateServerKeys()
		if err != nil {
			return err
		}
		data, err := keys.MarshalServerKeys(sk)
		if err != nil {
			return err
		}
		if err := mustWriteNew(path, data, 0o600); err != nil {
			return &userError{fmt.Sprintf("cannot create %s", path), "it must not exist yet", err}
		}
		fmt.Fprintf(c.stdout, "created %s (signing key %s, token key %s); give it to every node, and its public set (wsproof server-keys public) to every client\n",
			path, sk.Signing[0].KeyID, sk.Token[0].KeyID)
		return nil
	}
	data, err := readSmall(path, maxKeyFile)
	if err != nil {
		return &userError{fmt.Sprintf("cannot read the server key file %s", path), "create it with \"wsproof server-keys init\", or pass --file", err}
	}
	sk, err := keys.ParseServerKeys(data)
	if err != nil {
		return &userError{fmt.Sprintf("cannot load the server key file %s", path), "", err}
	}

	save := func(what string) error {
		data, err := keys.MarshalServerKeys(sk)
		if err != nil {
			return err
		}
		if err := writeAtomic(path, data, 0o600); err != nil {
			return &userError{fmt.Sprintf("cannot write %s", path), "", err}
		}
		fmt.Fprintf(c.stdout, "%s in %s\n", what, path)
		return nil
	}
	switch sub {
	case "list":
		w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "KIND\tKID\tALG\tSTATE")
		for i, s := range sk.Signing {
			fmt.Fprintf(w, "signing\t%s\t%s\t%s\n", printable(s.KeyID), s.Algorithm, keyState(i))
		}
		for i, t := range sk.Token {
			fmt.Fprintf(w, "token\t%s\t%s\t%s\n", printable(t.KeyID), t.Algorithm, keyState(i))
		}
		return w.Flush()

	case "add":
		if *signing == *token {
			return c.usageErr(fs, "add needs exactly one of --signing and --token")
		}
		if *signing {
			a := keys.ES256
			if *alg != "" {
				if a, err = keys.ParseAlgorithm(*alg); err != nil {
					return c.usageErr(fs, "--alg: %v", err)
				}
			}
			signer, err := keys.Generate(a, nil)
			if err != nil {
				return err
			}
			kid, err := randomID("sig-")
			if err != nil {
				return err
			}
			sk.Signing = append(sk.Signing, keys.SigningKey{KeyID: kid, Algorithm: a, Signer: signer})
			if err := save(fmt.Sprintf("added signing key %s (%s), not yet current,", kid, a)); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "next: give every client the new public set (wsproof server-keys public), then: wsproof server-keys promote %s\n", kid)
			return nil
		}
		a := keys.TokenDir
		if *alg != "" {
			a = *alg
		}
		if a != keys.TokenDir && a != keys.TokenA256KW {
			return c.usageErr(fs, "--alg for a token key must be dir or A256KW")
		}
		secret, err := randomBytes(keys.TokenKeySize)
		if err != nil {
			return err
		}
		kid, err := randomID("tok-")
		if err != nil {
			return err
		}
		sk.Token = append(sk.Token, keys.TokenKey{KeyID: kid, Algorithm: a, Secret: secret})
		if err := save(fmt.Sprintf("added token key %s (%s), not yet current,", kid, a)); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "next: copy the file to every node, then: wsproof server-keys promote %s\n", kid)
		return nil

	case "promote", "retire":
		kid := pos[0]
		si := slices.IndexFunc(sk.Signing, func(s keys.SigningKey) bool { return s.KeyID == kid })
		ti := slices.IndexFunc(sk.Token, func(t keys.TokenKey) bool { return t.KeyID == kid })
		if si < 0 && ti < 0 {
			return &userError{fmt.Sprintf("no key %q in %s", printable(kid), path), "list the keys with \"wsproof server-keys list\"", nil}
		}
		if si >= 0 && ti >= 0 {
			return &userError{fmt.Sprintf("key id %q names both a signing key and a token key", printable(kid)), "", nil}
		}
		if sub == "promote" {
			if si == 0 || ti == 0 {
				return &userError{fmt.Sprintf("key %s is already current", printable(kid)), "", nil}
			}
			if si > 0 {
				sk.Signing = moveFirst(sk.Signing, si)
			} else {
				sk.Token = moveFirst(sk.Token, ti)
			}
			return save(fmt.Sprintf("%s is now current", kid))
		}
		if si == 0 || ti == 0 {
			return &userError{fmt.Sprintf("key %s is current", printable(kid)), "promote another key first", nil}
		}
		if si > 0 {
			sk.Signing = slices.Delete(sk.Signing, si, si+1)
		} else {
			sk.Token = slices.Delete(sk.Token, ti, ti+1)
		}
		return save(fmt.Sprintf("retired %s", kid))

	case "public":
		pub, err := keys.MarshalPublicSet(sk.Public())
		if err != nil {
			return err
		}
		if *out == "" {
			_, err := c.stdout.Write(pub)
			return err
		}
		if err := writeAtomic(*out, pub, 0o644); err != nil {
			return &userError{fmt.Sprintf("cannot write %s", *out), "", err}
		}
		fmt.Fprintf(c.stdout, "wrote the public key set (%d keys) to %s\n", len(sk.Signing), *out)
		return nil

	case "token-keys":
		if *out == "" {
			return c.usageErr(fs, "token-keys needs --out FILE: the file holds secrets")
		}
		tk, err := keys.MarshalTokenKeys(sk.Token)
		if err != nil {
			return err
		}
		if err := writeAtomic(*out, tk, 0o600); err != nil {
			return &userError{fmt.Sprintf("cannot write %s", *out), "", err}
		}
		fmt.Fprintf(c.stdout, "wrote %d token keys to %s (mode 0600)\n", len(sk.Token), *out)
		return nil
	}
	return errors.New("unreachable")
}

func keyState(i int) string {
	if i == 0 {
		return "current"
	}
	return "verify only"
}

// moveFirst returns s with its element i moved to the front, the others in
// order.
func moveFirst[T any](s []T, i int) []T {
	out := make([]T, 0, len(s))
	out = append(out, s[i])
	out = append(out, s[:i]...)
	return append(out, s[i+1:]...)
}

// watchServerKeys polls the server key file at path every interval until ctx
// is done, and calls apply with each version that loads and differs from the
// last one read; onError gets each version that does not load, and the keys
// in use stay as they are. It runs on the caller's goroutine.
func watchServerKeys(ctx context.Context, path string, interval time.Duration, apply func(*keys.ServerKeys) error, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last os.FileInfo
	if fi, err := os.Stat(path); err == nil {
		last = fi
	}
	var lastSum [sha256.Size]byte
	if data, err := readSmall(path, maxKeyFile); err == nil {
		lastSum = sha256.Sum256(data)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(path)
		if err == nil && last != nil && os.SameFile(fi, last) && fi.Size() == last.Size() && fi.ModTime().Equal(last.ModTime()) {
			continue
		}
		if err != nil {
			if last != nil {
				onError(err)
			}
			last = nil
			continue
		}
		last = fi
		data, err := readSmall(path, maxKeyFile)
		if err != nil {
			onError(err)
			continue
		}
		sum := sha256.Sum256(data)
		if sum == lastSum {
			continue
		}
		sk, err := keys.ParseServerKeys(data)
		if err == nil {
			err = apply(sk)
		}
		if err != nil {
			onError(err)
			continue
		}
		lastSum = sum
	}
}

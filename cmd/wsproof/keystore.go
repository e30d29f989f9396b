package main

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/keystore/pkcs11"
	"github.com/wsproof/wsproof/keystore/sshagent"
	"github.com/wsproof/wsproof/keystore/tpm"
)

// Client keys that never leave a key store: a PKCS #11 token or a TPM,
// named by a URI given to --key or --store, or an ssh-agent (--ssh-agent,
// --store ssh-agent). The adapters live in keystore/; package client knows
// none of them, only crypto.Signer.

// storeKey is a client key held by a key store.
type storeKey struct {
	signer crypto.Signer  // the adapter itself, which may be a crypto.MessageSigner
	alg    keys.Algorithm // the only algorithm it can sign with, or "" (an RSA key in a token)
	where  string         // "in the TPM", for messages
	close  func() error
}

// isStoreURI reports whether --key names a key in a store rather than a
// file.
func isStoreURI(s string) bool { return pkcs11.IsURI(s) || tpm.IsURI(s) }

// openStoreKey opens the key a pkcs11: or tpm: URI names.
func openStoreKey(uri string) (*storeKey, error) {
	if pkcs11.IsURI(uri) {
		k, err := pkcs11.Open(uri)
		if err != nil {
			return nil, storeError("cannot use the PKCS #11 key", err)
		}
		var alg keys.Algorithm
		if algs := k.Algorithms(); len(algs) == 1 {
			alg = algs[0]
		}
		return &storeKey{signer: k, alg: alg, where: "in the PKCS #11 token", close: k.Close}, nil
	}
	k, err := tpm.Open(uri)
	if err != nil {
		return nil, storeError("cannot use the TPM key", err)
	}
	return &storeKey{signer: k, alg: k.Algorithm(), where: "in the TPM", close: k.Close}, nil
}

// openAgentKey selects a key of the ssh-agent at $SSH_AUTH_SOCK.
func openAgentKey(fingerprint string) (*storeKey, error) {
	k, err := sshagent.Open(fingerprint)
	if err != nil {
		return nil, storeError("cannot use a key of the ssh-agent", err)
	}
	return &storeKey{signer: k, alg: k.Algorithm(), where: "in the ssh-agent (" + k.Fingerprint() + ")", close: k.Close}, nil
}

// storeError explains a key-store failure: the adapters' errors already say
// what to do, so the hint is theirs.
func storeError(what string, err error) error {
	var hint string
	switch {
	case errors.Is(err, pkcs11.ErrURI), errors.Is(err, tpm.ErrURI):
		hint = "see \"Keys that never leave hardware\" in docs/devices.md for the URI forms"
	case errors.Is(err, sshagent.ErrNoKey):
		hint = "list the agent's keys with ssh-add -l and give one's fingerprint: --ssh-agent SHA256:..."
	}
	// The adapters' messages name the device, file or key: keep them whole,
	// where detail would cut a wrapped system error down to its last words.
	msg := err.Error()
	for _, p := range []string{"pkcs11: ", "tpm: ", "sshagent: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return &userError{what, hint, errors.New(msg)}
}

// checkStoreAlg refuses an --alg the key cannot sign with: a TPM key's
// scheme is fixed when it is made, and an agent signs RSA as RS256 only.
func checkStoreAlg(k *storeKey, algFlag string) error {
	if k.alg != "" && algFlag != "" && keys.Algorithm(algFlag) != k.alg {
		hint := "drop --alg"
		if algFlag == string(keys.PS256) && strings.HasPrefix(k.where, "in the ssh-agent") {
			hint = "an ssh-agent cannot make RSA-PSS signatures: enroll the key as RS256"
		}
		return &userError{fmt.Sprintf("the key %s signs with %s only, not %s", k.where, k.alg, algFlag), hint, nil}
	}
	return nil
}

// sshAgentFlag is --ssh-agent [FINGERPRINT]: a boolean flag that also takes
// a fingerprint, as --ssh-agent=SHA256:... or, in connect, as the argument
// after it.
type sshAgentFlag struct {
	set bool
	fp  string
}

func (f *sshAgentFlag) String() string   { return f.fp }
func (f *sshAgentFlag) IsBoolFlag() bool { return true }

func (f *sshAgentFlag) Set(s string) error {
	switch {
	case s == "true":
		f.set, f.fp = true, ""
	case s == "false":
		f.set, f.fp = false, ""
	case strings.HasPrefix(s, "SHA256:"):
		f.set, f.fp = true, s
	default:
		return errors.New(`give an OpenSSH SHA-256 fingerprint, "SHA256:...", as ssh-add lists them`)
	}
	return nil
}

// takeFingerprint moves a fingerprint given as its own argument after
// --ssh-agent out of the positional arguments.
func (f *sshAgentFlag) takeFingerprint(pos []string) []string {
	if !f.set || f.fp != "" {
		return pos
	}
	var rest []string
	for _, p := range pos {
		if f.fp == "" && strings.HasPrefix(p, "SHA256:") {
			f.fp = p
			continue
		}
		rest = append(rest, p)
	}
	return rest
}

// keygenStore makes a key in a store (keygen --store) and prints what
// keygen prints for a key file: its key id, the command that enrolls its
// public half, and the command that connects with it.
func (c *cli) keygenStore(fs *flag.FlagSet, store string, alg keys.Algorithm, bits int, kid, sub string, groups []string) error {
	var (
		signer  crypto.Signer
		closer  func() error
		where   string
		useKey  string // the connect flags that name the key
		printed string // what the store calls the key
		note    string
	)
	switch {
	case store == "ssh-agent":
		if bits != 0 {
			return c.usageErr(fs, "--bits is for keys in a PKCS #11 token or a TPM")
		}
		k, err := sshagent.Generate(alg, "wsproof "+c.defaultSubject(sub))
		if err != nil {
			return storeError("cannot make a key in the ssh-agent", err)
		}
		signer, closer, where = k, k.Close, "the ssh-agent"
		printed = k.Fingerprint()
		useKey = "--ssh-agent " + k.Fingerprint()
		note = "the agent holds the only copy: it is lost when the agent exits or ssh-add -D runs"
	case pkcs11.IsURI(store):
		k, err := pkcs11.Generate(store, alg, bits)
		if err != nil {
			return storeError("cannot make the key in the PKCS #11 token", err)
		}
		signer, closer, where = k, k.Close, "the PKCS #11 token"
		printed = k.URI()
		useKey = "--key " + shellQuote(k.URI())
		if u, _ := pkcs11.ParseURI(store); u != nil && u.PinValue != "" {
			note = "the connect command leaves pin-value out: add it, or keep the PIN in a file named by pin-source=file:/path"
		}
	case tpm.IsURI(store):
		k, err := tpm.Generate(store, alg, bits)
		if err != nil {
			return storeError("cannot make the key in the TPM", err)
		}
		signer, closer, where = k, k.Close, "the TPM"
		printed = k.URI()
		useKey = "--key " + shellQuote(k.URI())
	default:
		return c.usageErr(fs, "--store takes a pkcs11: URI, a tpm: URI or ssh-agent")
	}
	defer closer()

	pub := signer.Public()
	thumb, err := keys.Thumbprint(pub)
	if err != nil {
		return err
	}
	if kid == "" {
		kid = thumb
	}
	fmt.Fprintf(c.stdout, "made %s key in %s: %s\n", alg, where, printed)
	fmt.Fprintf(c.stdout, "key id:      %s\n", kid)
	fmt.Fprintf(c.stdout, "thumbprint:  %s\n", thumb)
	fmt.Fprintf(c.stdout, "algorithm:   %s\n", alg)
	if n, ok := pub.(*rsa.PublicKey); ok {
		fmt.Fprintf(c.stdout, "modulus:     %d bits\n", n.N.BitLen())
	}
	enroll, err := enrollCommand(pub, kid, alg, c.defaultSubject(sub), groups)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "enroll it on the server with:\n    %s\n", enroll)
	connect := "wsproof connect ws://" + defaultListen + "/ws " + useKey
	if kid != thumb {
		connect += " --kid " + shellQuote(kid)
	}
	if pkcs11.IsURI(store) && (alg == keys.RS256 || alg == keys.PS256) {
		connect += " --alg " + string(alg) // a token does not say how an RSA key signs
	}
	fmt.Fprintf(c.stdout, "then connect with:\n    %s\n", connect)
	if note != "" {
		fmt.Fprintf(c.stdout, "note: %s\n", note)
	}
	return nil
}

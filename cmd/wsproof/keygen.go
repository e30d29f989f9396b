package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/wsproof/wsproof/keys"
)

const keygenUsage = `Usage: wsproof keygen [--alg ES256] [--out FILE | --store STORE] [--jwk] [flags]

Generates a client private key and writes it to FILE with mode 0600, as a PKCS #8
PEM block or, with --jwk, as a private JWK. It never overwrites a file and never
prints the private key. It prints the key id, the RFC 7638 thumbprint and the
"wsproof keys add" command that enrolls the key on a server.

With --store, the key is made in a key store instead, and never leaves it:
    pkcs11:token=T;object=LABEL?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path/to/pin
                     a PKCS #11 token (ES256, ES384, ES512, RS256, PS256); an id is
                     added when the URI has none
    tpm:FILE[?device=/dev/tpmrm0] or tpm:0x81XXXXXX
                     a TPM 2.0 (ES256, RS256, PS256; ES384, ES512 where the TPM has
                     them): the key's blobs, useless on any other TPM, go to FILE, or
                     the key is made persistent at the handle
    ssh-agent        the ssh-agent at $SSH_AUTH_SOCK (ES256, ES384, ES512, EdDSA,
                     RS256), which then holds the only copy
See "Keys that never leave hardware" in docs/devices.md.

Flags:
    --alg ALG        ES256, ES384, ES512, RS256, PS256 or EdDSA (default ES256)
    --bits N         RSA modulus size, 2048 to 4096 (default 2048; RS256 and PS256 only)
    --out FILE       where to write the key (default STATE/id_<alg>.pem, or .jwk)
    --store STORE    make the key in a PKCS #11 token, a TPM or the ssh-agent (above)
    --jwk            write a private JWK (with its kid and alg) instead of PEM
    --kid KID        the key id (default the RFC 7638 thumbprint)
    --sub SUBJECT    subject for the printed enroll command (default $USER@hostname)
    --groups G,...   groups for the printed enroll command
    --state DIR      state folder for the default --out (default $WSPROOF_STATE, else $HOME/.wsproof)
`

func (c *cli) keygen(ctx context.Context, args []string) error {
	fs := c.newFlags("keygen", keygenUsage)
	var (
		algName   = fs.String("alg", string(keys.ES256), "")
		bits      = fs.Int("bits", 0, "")
		out       = fs.String("out", "", "")
		store     = fs.String("store", "", "")
		jwk       = fs.Bool("jwk", false, "")
		kid       = fs.String("kid", "", "")
		sub       = fs.String("sub", "", "")
		stateFlag = fs.String("state", "", "")
		groups    listFlag
	)
	fs.Var(&groups, "groups", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "keygen takes no arguments, got %q", pos[0])
	}
	alg, err := keys.ParseAlgorithm(*algName)
	if err != nil {
		return c.usageErr(fs, "unknown algorithm %q: choose one of %s", *algName, algList())
	}
	var signer crypto.Signer
	switch {
	case *bits != 0 && alg != keys.RS256 && alg != keys.PS256:
		return c.usageErr(fs, "--bits is for RS256 and PS256 keys only")
	case *bits != 0 && (*bits < keys.MinRSABits || *bits > keys.MaxRSABits):
		return c.usageErr(fs, "--bits must be between %d and %d", keys.MinRSABits, keys.MaxRSABits)
	case *store != "" && (*out != "" || *jwk):
		return c.usageErr(fs, "--out and --jwk are for key files: with --store the key stays in the store")
	case *store != "":
		if *kid != "" {
			if err := checkKID(*kid); err != nil {
				return c.usageErr(fs, "%v", err)
			}
		}
		return c.keygenStore(fs, *store, alg, *bits, *kid, *sub, groups)
	case *bits != 0:
		signer, err = keys.GenerateRSA(*bits, nil)
	default:
		signer, err = keys.Generate(alg, nil)
	}
	if err != nil {
		return err
	}
	thumb, err := keys.Thumbprint(signer.Public())
	if err != nil {
		return err
	}
	if *kid == "" {
		*kid = thumb
	}
	if err := checkKID(*kid); err != nil {
		return c.usageErr(fs, "%v", err)
	}

	path := *out
	if path == "" {
		dir, err := c.stateDir(*stateFlag)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return &userError{fmt.Sprintf("cannot create the state folder %s", dir), "pass --out FILE", err}
		}
		ext := ".pem"
		if *jwk {
			ext = ".jwk"
		}
		path = filepath.Join(dir, "id_"+strings.ToLower(string(alg))+ext)
	}
	var data []byte
	if *jwk {
		data, err = keys.MarshalJWK(signer, *kid, alg)
		data = append(data, '\n')
	} else {
		data, err = keys.MarshalPrivatePEM(signer)
	}
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return &userError{fmt.Sprintf("%s already exists", path), "choose another --out, or remove the file first", nil}
	}
	if err := mustWriteNew(path, data, 0o600); err != nil {
		return &userError{fmt.Sprintf("cannot write %s", path), "check the folder exists and is writable", err}
	}

	fmt.Fprintf(c.stdout, "wrote %s private key to %s (keep it secret)\n", alg, path)
	fmt.Fprintf(c.stdout, "key id:      %s\n", *kid)
	fmt.Fprintf(c.stdout, "thumbprint:  %s\n", thumb)
	fmt.Fprintf(c.stdout, "algorithm:   %s\n", alg)
	if n, ok := signer.Public().(*rsa.PublicKey); ok {
		fmt.Fprintf(c.stdout, "modulus:     %d bits\n", n.N.BitLen())
	}
	enroll, err := enrollCommand(signer.Public(), *kid, alg, c.defaultSubject(*sub), groups)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "enroll it on the server with:\n    %s\n", enroll)
	connect := "wsproof connect ws://" + defaultListen + "/ws --key " + shellQuote(path)
	if !*jwk {
		// A PEM file carries neither the key id nor, for RSA, the algorithm.
		if *kid != thumb {
			connect += " --kid " + shellQuote(*kid)
		}
		if alg == keys.RS256 || alg == keys.PS256 {
			connect += " --alg " + string(alg)
		}
	}
	fmt.Fprintf(c.stdout, "then connect with:\n    %s\n", connect)
	return nil
}

func algList() string {
	names := make([]string, len(keys.Algorithms))
	for i, a := range keys.Algorithms {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// checkKID applies the registry's key id rule (spec section "Key registry")
// before anything is written, so that a bad --kid fails early.
func checkKID(kid string) error {
	if keys.CheckKeyID(kid) != nil {
		return fmt.Errorf("a key id is 1 to %d printable ASCII characters without spaces", keys.MaxKeyIDLen)
	}
	return nil
}

// defaultSubject is the subject the printed enroll command proposes.
func (c *cli) defaultSubject(sub string) string {
	if sub != "" {
		return sub
	}
	user := c.getenv("USER")
	if user == "" {
		user = "client"
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		return user + "@" + host
	}
	return user
}

// enrollCommand is the exact "wsproof keys add" command line that enrolls pub
// on a server. The public key travels inline as a JWK, with its key id and
// algorithm, so the command works on a machine that has no copy of the key.
func enrollCommand(pub crypto.PublicKey, kid string, alg keys.Algorithm, sub string, groups []string) (string, error) {
	jwk, err := keys.MarshalJWK(pub, kid, alg)
	if err != nil {
		return "", err
	}
	cmd := "wsproof keys add --jwk " + shellQuote(string(bytes.TrimSpace(jwk))) + " --sub " + shellQuote(sub)
	if len(groups) > 0 {
		cmd += " --groups " + shellQuote(strings.Join(groups, ","))
	}
	return cmd, nil
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

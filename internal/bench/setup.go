package bench

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// identity is the server identity of the benchmark server; it is a string
// the client checks, never an address anything dials.
const identity = "ws://127.0.0.1/wsproof-bench"

// env is the key material and processes shared by every measurement.
type env struct {
	o        *options
	dir      string // scratch folder: child configs, logs, built programs
	root     string // the wsproof module root
	exe      string // this program, started again as the server child
	log      io.Writer
	signers  map[keys.Algorithm]crypto.Signer
	sk       *keys.ServerKeys
	pub      *keys.PublicSet
	registry []byte
	certPEM  []byte
	keyPEM   []byte
	roots    *x509.CertPool

	// Centrifuge: the HS256 secret, the ES256 key and one token of each.
	hsSecret []byte
	esKey    *ecdsa.PrivateKey
	jwts     map[string]string
}

func newEnv(o *options, dir string, logw io.Writer) (*env, error) {
	e := &env{o: o, dir: dir, log: logw, signers: map[keys.Algorithm]crypto.Signer{}, jwts: map[string]string{}}
	var err error
	if e.exe, err = os.Executable(); err != nil {
		return nil, err
	}
	serverKey, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, keys.TokenKeySize)
	rand.Read(secret)
	e.sk = &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "bench-server", Algorithm: keys.ES256, Signer: serverKey}},
		Token:   []keys.TokenKey{{KeyID: "bench-token", Algorithm: keys.TokenDir, Secret: secret}},
	}
	e.pub = e.sk.Public()
	var entries []*keys.Entry
	for _, alg := range benchAlgs {
		k, err := keys.Generate(alg, nil)
		if err != nil {
			return nil, err
		}
		e.signers[alg] = k
		entries = append(entries, &keys.Entry{KeyID: kidOf(alg), Key: k.Public(), Algorithm: alg,
			Subject: "bench-" + string(alg), Groups: []string{"bench"}})
	}
	if _, err := keys.NewSet(entries); err != nil { // fills in thumbprints, checks the rules
		return nil, err
	}
	if e.registry, err = keys.MarshalRegistry(entries); err != nil {
		return nil, err
	}
	if err := e.makeCert(); err != nil {
		return nil, err
	}
	if err := e.makeJWTs(); err != nil {
		return nil, err
	}
	return e, nil
}

// benchAlgs are the client algorithms measured, in table order.
var benchAlgs = []keys.Algorithm{keys.ES256, keys.ES384, keys.EdDSA, keys.PS256, keys.RS256}

func kidOf(alg keys.Algorithm) string { return "bench-" + string(alg) }

// makeCert creates a self-signed ECDSA P-256 certificate for 127.0.0.1.
func (e *env) makeCert() error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wsproof-bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	e.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	e.keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	cert, _ := x509.ParseCertificate(der)
	e.roots = x509.NewCertPool()
	e.roots.AddCert(cert)
	return nil
}

// makeJWTs mints the Centrifuge connection tokens, as an application backend
// would: sub and a two-hour exp.
func (e *env) makeJWTs() error {
	e.hsSecret = make([]byte, 32)
	rand.Read(e.hsSecret)
	var err error
	if e.esKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return err
	}
	now := time.Now()
	claims := jwt.Claims{Subject: "bench", IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(2 * time.Hour))}
	for alg, key := range map[string]any{"HS256": e.hsSecret, "ES256": e.esKey} {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return err
		}
		tok, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			return err
		}
		e.jwts[alg] = tok
	}
	return nil
}

func (e *env) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: e.roots, MinVersion: tls.VersionTLS13}
}

// clientConfig is the package client configuration of one algorithm's key.
func (e *env) clientConfig(alg keys.Algorithm, tlsOn bool) *client.Config {
	cfg := &client.Config{KeyID: kidOf(alg), Signer: e.signers[alg], Algorithm: alg,
		ServerKeys: e.pub, ServerIdentity: identity}
	if tlsOn {
		cfg.TLSConfig = e.tlsConfig()
	}
	return cfg
}

// protoClient is the same key as a package protocol client, for the raw
// client of the memory and scale runs.
func (e *env) protoClient(alg keys.Algorithm) (*protocol.Client, error) {
	return protocol.NewClient(&protocol.ClientConfig{KeyID: kidOf(alg), Signer: e.signers[alg], Algorithm: alg,
		ServerKeys: e.pub, ServerIdentity: identity})
}

// startServer starts a wsproof-bench server child with the given token
// lifetime and refresh lead (zero: the server's defaults).
func (e *env) startServer(name string, tokenLifetime, refreshBefore time.Duration) (*child, error) {
	return e.startServerLimits(name, tokenLifetime, refreshBefore, nil)
}

// startServerLimits is startServer with the given pre-authentication
// limits (nil: the raised limits of the throughput runs).
func (e *env) startServerLimits(name string, tokenLifetime, refreshBefore time.Duration, limits *childLimits) (*child, error) {
	sk, err := keys.MarshalServerKeys(e.sk)
	if err != nil {
		return nil, err
	}
	cfg := childConfig{Identity: identity, ServerKeys: sk, Registry: e.registry, CertPEM: e.certPEM, KeyPEM: e.keyPEM,
		TokenLifetime: tokenLifetime, RefreshBefore: refreshBefore, MaxLife: 2 * time.Hour, Limits: limits}
	return e.startChildConfig(name, &cfg)
}

// startApp starts a server child with the server's default token
// lifetimes and the raised pre-authentication limits, its configuration
// adjusted by mod (the application, the registry file).
func (e *env) startApp(name string, mod func(*childConfig)) (*child, error) {
	sk, err := keys.MarshalServerKeys(e.sk)
	if err != nil {
		return nil, err
	}
	cfg := childConfig{Identity: identity, ServerKeys: sk, Registry: e.registry, CertPEM: e.certPEM, KeyPEM: e.keyPEM,
		MaxLife: 2 * time.Hour}
	mod(&cfg)
	return e.startChildConfig(name, &cfg)
}

// startChildConfig writes cfg where the child reads it and starts the child.
func (e *env) startChildConfig(name string, cfg *childConfig) (*child, error) {
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(e.dir, "child-"+name+".json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return nil, err
	}
	return startChild(name, e.exe, []string{"server", "-config", file}, []string{childEnv + "=1"}, e.log)
}

// startCentrifuge builds (once) and starts the Centrifuge harness.
func (e *env) startCentrifuge() (*child, error) {
	bin := filepath.Join(e.dir, "centrifuge-bench")
	if _, err := os.Stat(bin); err != nil {
		dir := filepath.Join(e.root, "cmd", "wsproof-bench", "centrifuge")
		if err := goBuild(dir, nil, bin, "."); err != nil {
			return nil, fmt.Errorf("building the Centrifuge harness: %w", err)
		}
	}
	der, err := x509.MarshalPKIXPublicKey(&e.esKey.PublicKey)
	if err != nil {
		return nil, err
	}
	pubFile := filepath.Join(e.dir, "centrifuge-es256.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return startChild("centrifuge", bin, []string{"-hs256-secret", hex.EncodeToString(e.hsSecret), "-es256-pub", pubFile}, nil, e.log)
}

// writeClientFiles writes what the tiny device client needs: its key (PEM)
// and the pinned server key set (JWKS).
func (e *env) writeClientFiles() (keyFile, setFile string, err error) {
	priv, err := keys.MarshalPrivatePEM(e.signers[keys.ES256])
	if err != nil {
		return "", "", err
	}
	set, err := keys.MarshalPublicSet(e.pub)
	if err != nil {
		return "", "", err
	}
	keyFile, setFile = filepath.Join(e.dir, "device-key.pem"), filepath.Join(e.dir, "server.pub.jwks")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		return "", "", err
	}
	return keyFile, setFile, os.WriteFile(setFile, set, 0o644)
}

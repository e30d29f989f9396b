package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// maxKeyFile bounds the size of the key files the command reads.
const maxKeyFile = 1 << 20

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return os.ReadFile(path)
}

// writeNew creates path with data and mode, and reports whether it did: an
// existing file is left alone and reported as not created.
func writeNew(path string, data []byte, mode fs.FileMode) (created bool, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return false, err
	}
	return true, nil
}

// mustWriteNew is writeNew for a file that must not exist yet.
func mustWriteNew(path string, data []byte, mode fs.FileMode) error {
	created, err := writeNew(path, data, mode)
	if err == nil && !created {
		err = fmt.Errorf("%s already exists", path)
	}
	return err
}

// testHook, when set (by tests only), is called at each step of an edit of
// a file, named by step, so that a test can act between two steps: let
// another editor run, or kill the editor there.
var testHook func(step string)

func editStep(step string) {
	if testHook != nil {
		testHook(step)
	}
}

// tempPrefix begins the names of writeAtomic's temporary files for path.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// linkTarget returns the file that path names, following symbolic links;
// a path that does not exist is its own target, and a link to a missing file
// is an error. Files are written through links, not over them: a registry
// or key file mounted through links (Kubernetes ConfigMaps and Secrets,
// configuration management) must stay a link, so that the next version the
// mount swaps in is the one read.
func linkTarget(path string) (string, error) {
	target, err := filepath.EvalSymlinks(path)
	if err == nil {
		return target, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("%s is a symbolic link to a missing file", path)
	}
	return path, nil
}

// writeAtomic replaces path, or the file it links to, with data: it writes a
// temporary file in the same folder, syncs it, renames it over the file and
// syncs the folder, so that a reader (a running server's registry watcher)
// sees the old file or the new one, never a part, and a crash at any point
// leaves one of them.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	path, err := linkTarget(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return err
	}
	editStep("temp")
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	editStep("written")
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	editStep("synced")
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	editStep("renamed")
	ok = true
	// Make the rename durable where the platform allows it.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// randomID returns prefix followed by 96 random bits in base64url.
func randomID(prefix string) (string, error) {
	b, err := randomBytes(12)
	if err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// certPin is the pin "wsproof connect --pin" takes: the hex SHA-256 of the
// certificate's DER encoding.
func certPin(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// devCertificate loads the self-signed development certificate from the
// state folder, creating it on first use. The certificate names localhost,
// 127.0.0.1 and ::1; clients trust it by its pin, not by a CA.
func devCertificate(dir string) (cert tls.Certificate, pin string, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, devCertFile), filepath.Join(dir, devKeyFile)
	_, cerr := os.Stat(certPath)
	_, kerr := os.Stat(keyPath)
	switch {
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		if err := createDevCert(certPath, keyPath); err != nil {
			return cert, "", false, &userError{"cannot create the development TLS certificate", "check the state folder's permissions", err}
		}
		created = true
	case errors.Is(cerr, fs.ErrNotExist) || errors.Is(kerr, fs.ErrNotExist):
		return cert, "", false, &userError{fmt.Sprintf("only one of %s and %s exists", certPath, keyPath),
			"remove the other one too, and a new certificate will be created (clients must then use its new pin)", nil}
	}
	cert, err = tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return cert, "", false, &userError{"cannot load the development TLS certificate",
			fmt.Sprintf("remove %s and %s to create a new one", certPath, keyPath), err}
	}
	return cert, certPin(cert.Certificate[0]), created, nil
}

func createDevCert(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "wsproof development server"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0), // clients pin it; expiry adds nothing
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := mustWriteNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := mustWriteNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// Package pkcs11 signs wsproof handshakes with a private key held by a
// PKCS #11 token: a hardware security module, a smart card, a USB token, or
// SoftHSM2 for tests. The key is created on the token, sensitive and never
// extractable, and never leaves it: the token signs. Package client never
// imports this package.
//
// # Contract
//
// A key is named by an RFC 7512 PKCS #11 URI ([ParseURI] says which
// attributes are implemented), for example
//
//	pkcs11:token=wsproof;object=sensor-7?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/wsproof/pin
//
// [Open] loads the module, logs in with the PIN and finds the one key pair
// the URI names; [Generate] creates one. A [*Key] is a crypto.Signer for
// ES256, ES384 and ES512 (ECDSA P-256, P-384, P-521, signed with CKM_ECDSA;
// the token's r||s is returned as ASN.1 DER, as the crypto.Signer contract
// says), and RS256 and PS256 (RSA of 2048 to 4096 bits, with CKM_RSA_PKCS
// over the DigestInfo and CKM_RSA_PKCS_PSS with MGF1-SHA-256 and a salt as
// long as the hash). Whether a token offers each mechanism is the token's
// business: SoftHSM2 2.6 offers them all. EdDSA is not supported: the
// binding used has no Ed25519 (CKK_EC_EDWARDS) keys.
//
// # Why crypto11
//
// The package is built on github.com/ThalesGroup/crypto11, which wraps
// github.com/miekg/pkcs11 (the plain cgo binding of the PKCS #11 C API) in
// a crypto.Signer. It already does, and tests against SoftHSM2, the parts
// that are easy to get subtly wrong by hand on the raw binding: the
// DigestInfo prefixes of PKCS #1 v1.5, the CK_RSA_PKCS_PSS_PARAMS layout,
// the r||s to DER conversion, and a pool of logged-in sessions that makes
// one key safe for concurrent use; and it is maintained (v1.6.2, 2025).
// Using miekg/pkcs11 alone would have bought Ed25519 at the price of
// writing those by hand.
//
// # cgo
//
// A PKCS #11 module is a C shared library, so this package needs cgo. Built
// without cgo (CGO_ENABLED=0), Open and Generate still check the URI, then
// fail with ErrNoCgo; the rest of wsproof, and package client above all,
// stays free of cgo.
//
// # Concurrency
//
// A Key is safe for concurrent use: each signature takes a session from
// crypto11's pool. Close waits for signatures in progress; signing after
// Close fails.
//
// # Failures
//
// ParseURI refuses a malformed URI or one using an attribute it does not
// implement (errors wrap ErrURI). Open fails when the module cannot be
// loaded (module-path names a library that is loaded into the process:
// give only a module you trust), when no token matches, when the PIN is
// missing or wrong (a token may lock itself after a few wrong PINs), and
// when no key pair, or more than one, matches the URI. PKCS #11 logs in an
// application rather than a session: while one Key of a token is open in a
// process, another Open of the same token succeeds with any PIN. Generate fails with
// ErrExists when the label or id is taken, and when the token refuses the
// key type or size. Sign fails when the token refuses the mechanism.
package pkcs11

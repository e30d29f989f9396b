// Package tpm signs wsproof handshakes with a key made in a TPM 2.0 and
// never exported from it. Package client never imports this package; it
// is pure Go (github.com/google/go-tpm), so it builds without cgo.
//
// # Contract
//
// A key is named by a tpm: URI (see [URI]): a key file, tpm:PATH, or a
// persistent handle, tpm:0x81XXXXXX, optionally with the TPM's device or
// emulator socket (?device=/dev/tpmrm0 is the default). [Generate] has the
// TPM make the key under the storage root key (the TCG ECC P-256 SRK
// template under the owner hierarchy, made again on each use: the same TPM
// always makes the same SRK) and either writes the two blobs TPM2_Create
// returns to the file, or makes the key persistent at the handle. [Open]
// loads or reads it. The key is created with fixedTPM, fixedParent and
// sensitiveDataOrigin: the TPM made it and will never let it out, not even
// wrapped for another TPM, and a key file is useless on any other TPM or
// after the TPM is cleared. Open refuses a key without those attributes.
//
// A [*Key] is a crypto.Signer for one algorithm, fixed in the TPM when the
// key is made: ES256, ES384 or ES512 (ECDSA with the curve's hash; the
// TPM's r and s are returned as ASN.1 DER), RS256 (RSASSA-PKCS1-v1_5
// SHA-256) or PS256 (RSASSA-PSS SHA-256). PS256 needs a salt as long as
// the hash, and the TPM chooses the salt: TPMs have used the largest salt
// the key allows as well as the hash length (FIPS 186-4's limit). swtpm,
// which the tests run, uses the hash length; Sign checks every signature
// against the public key with exactly that salt, so a TPM that uses
// another fails there, with a clear error, rather than at the server
// (enroll such a key as RS256 instead). Which curves
// and RSA sizes exist is the TPM's business: every TPM offers P-256 and
// RSA 2048; P-384, P-521 and RSA 3072 are optional (swtpm offers them).
// EdDSA is not offered: TPM 2.0 has no Ed25519.
//
// The key has no password (an empty authValue) and no policy: any process
// that can open the TPM and read the key file (or name the handle) can
// sign with it, as with a key file of mode 0600, but nobody can copy it.
// Keys with a password or a policy, an owner hierarchy with a password,
// and parameter encryption are not supported. Nothing secret crosses the
// bus: only the digest and the signature.
//
// # Concurrency
//
// A Key is safe for concurrent use: commands to the TPM are serialized.
// Close flushes a key loaded from a file out of the TPM (a persistent key
// stays) and closes the device; signing afterwards fails. An emulator
// socket serves one connection at a time, so open one Key at a time on it.
//
// # Failures
//
// ParseURI refuses malformed URIs (errors wrap ErrURI). Open fails when
// the device cannot be opened (on Linux, /dev/tpmrm0 belongs to the tss
// group), when the file is not a key file this package wrote, when this
// TPM cannot load it (made in another TPM, or the TPM was cleared), when
// the handle holds no key, and for a key that is not a signing key made in
// this TPM with a fixed wsproof scheme. Generate fails with ErrExists when
// the file or handle is taken, and when the TPM does not offer the
// algorithm or size. Sign fails when opts do not match the key's scheme.
package tpm

package tpm

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/wsproof/wsproof/keys"
)

// A key file holds the two blobs TPM2_Create returns for a key made under
// the storage root key (the TCG ECC P-256 SRK template, under the owner
// hierarchy): its public area and its private area, which the TPM has
// encrypted and bound with a key that never leaves it. The file is useless
// without that TPM, and the TPM cannot export the key. The PEM body is the
// TPM2B_PUBLIC then the TPM2B_PRIVATE, each as the TPM marshals it (a
// two-byte size, then the bytes), and nothing else.
const pemType = "WSPROOF TPM KEY"

// maxKeyFile bounds a key file: the two blobs of a 4096-bit RSA key are
// well under 2 KiB.
const maxKeyFile = 16 << 10

func marshalKeyFile(pub, priv []byte) []byte {
	var b []byte
	for _, part := range [][]byte{pub, priv} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(part)))
		b = append(b, part...)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: b})
}

// parseKeyFile returns the public and private blobs of a key file (without
// their size fields). It is strict: one PEM block of the right type without
// headers, nothing but space around it, and two non-empty blobs that fill
// the body exactly.
func parseKeyFile(data []byte) (pub, priv []byte, err error) {
	bad := errors.New("tpm: not a wsproof TPM key file")
	if len(data) > maxKeyFile {
		return nil, nil, bad
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != pemType || len(block.Headers) != 0 || len(bytes.TrimSpace(rest)) != 0 ||
		len(bytes.TrimSpace(data[:bytes.Index(data, []byte("-----BEGIN"))])) != 0 {
		return nil, nil, bad
	}
	b := block.Bytes
	var parts [2][]byte
	for i := range parts {
		if len(b) < 2 {
			return nil, nil, bad
		}
		n := int(binary.BigEndian.Uint16(b))
		if n == 0 || len(b)-2 < n {
			return nil, nil, bad
		}
		parts[i], b = b[2:2+n], b[2+n:]
	}
	if len(b) != 0 {
		return nil, nil, bad
	}
	return parts[0], parts[1], nil
}

// checkPublic parses a key's public area and checks that it is a key this
// package signs with: a signing key (not restricted, not for decryption),
// created in a TPM and bound to it and to its parent (fixedTPM, fixedParent,
// sensitiveDataOrigin: it was never outside this TPM and cannot be
// duplicated), used with an empty password (userWithAuth), with its scheme
// fixed to one wsproof algorithm. It returns that algorithm and the public
// key.
func checkPublic(area []byte) (*tpm2.TPMTPublic, keys.Algorithm, crypto.PublicKey, error) {
	bad := func(why string) error { return fmt.Errorf("tpm: the key cannot be used: %s", why) }
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](area)
	if err != nil {
		return nil, "", nil, bad("its public area does not parse")
	}
	if !bytes.Equal(tpm2.Marshal(*p), area) {
		return nil, "", nil, bad("its public area does not parse exactly")
	}
	a := p.ObjectAttributes
	switch {
	case p.NameAlg != tpm2.TPMAlgSHA256:
		return nil, "", nil, bad("its name algorithm is not SHA-256")
	case !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin:
		return nil, "", nil, bad("it was not created in this TPM, or may be duplicated out of it (fixedTPM, fixedParent, sensitiveDataOrigin)")
	case !a.SignEncrypt || a.Decrypt || a.Restricted:
		return nil, "", nil, bad("it is not an unrestricted signing key")
	case !a.UserWithAuth || len(p.AuthPolicy.Buffer) != 0:
		return nil, "", nil, bad("it requires a policy, which this package does not satisfy")
	}
	var alg keys.Algorithm
	switch p.Type {
	case tpm2.TPMAlgECC:
		d, err := p.Parameters.ECCDetail()
		if err != nil {
			return nil, "", nil, bad("its ECC parameters do not parse")
		}
		var want tpm2.TPMAlgID
		switch d.CurveID {
		case tpm2.TPMECCNistP256:
			alg, want = keys.ES256, tpm2.TPMAlgSHA256
		case tpm2.TPMECCNistP384:
			alg, want = keys.ES384, tpm2.TPMAlgSHA384
		case tpm2.TPMECCNistP521:
			alg, want = keys.ES512, tpm2.TPMAlgSHA512
		default:
			return nil, "", nil, bad("its curve is not P-256, P-384 or P-521")
		}
		if d.Scheme.Scheme != tpm2.TPMAlgECDSA || schemeHash(d.Scheme.Details.ECDSA()) != want || d.KDF.Scheme != tpm2.TPMAlgNull {
			return nil, "", nil, bad("its scheme is not ECDSA with the curve's hash")
		}
	case tpm2.TPMAlgRSA:
		d, err := p.Parameters.RSADetail()
		if err != nil {
			return nil, "", nil, bad("its RSA parameters do not parse")
		}
		switch d.Scheme.Scheme {
		case tpm2.TPMAlgRSASSA:
			alg = keys.RS256
			if schemeHash(d.Scheme.Details.RSASSA()) != tpm2.TPMAlgSHA256 {
				return nil, "", nil, bad("its RSASSA scheme does not use SHA-256")
			}
		case tpm2.TPMAlgRSAPSS:
			alg = keys.PS256
			if schemeHash(d.Scheme.Details.RSAPSS()) != tpm2.TPMAlgSHA256 {
				return nil, "", nil, bad("its RSAPSS scheme does not use SHA-256")
			}
		default:
			return nil, "", nil, bad("its scheme is not fixed to RSASSA or RSAPSS (create it with one)")
		}
	default:
		return nil, "", nil, bad("it is neither an ECC nor an RSA key")
	}
	pub, err := tpm2.Pub(*p)
	if err != nil {
		return nil, "", nil, bad("its public key does not parse")
	}
	if err := keys.CheckKey(alg, pub); err != nil {
		return nil, "", nil, fmt.Errorf("tpm: the key cannot be used: %w", err)
	}
	return p, alg, pub, nil
}

// schemeHash returns the hash of a scheme's details, or TPM_ALG_NULL.
func schemeHash[T interface {
	*tpm2.TPMSSigSchemeECDSA | *tpm2.TPMSSigSchemeRSASSA | *tpm2.TPMSSigSchemeRSAPSS
}](s T, err error) tpm2.TPMIAlgHash {
	if err != nil {
		return tpm2.TPMAlgNull
	}
	switch v := any(s).(type) {
	case *tpm2.TPMSSigSchemeECDSA:
		return v.HashAlg
	case *tpm2.TPMSSigSchemeRSASSA:
		return v.HashAlg
	case *tpm2.TPMSSigSchemeRSAPSS:
		return v.HashAlg
	}
	return tpm2.TPMAlgNull
}

package vectors

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/keys"
)

// goJoseOpen opens a session token with go-jose's jwt package configured as
// spec section "Negative cases" prescribes for a generic JOSE library: the
// token key and the pinned signing key named by kid, an allow-list of each
// key's algorithm, the issuer and audience checks, and zero clock leeway,
// at validation time at. It returns the claims.
func goJoseOpen(f *vectorfile.File, token string, at time.Time, leeway time.Duration) (*jwt.Claims, error) {
	sk, err := keys.ParseServerKeys(f.Keys.ServerPrivate)
	if err != nil {
		return nil, err
	}
	pinned, err := keys.ParsePublicSet(f.Keys.ServerPublic)
	if err != nil {
		return nil, err
	}
	// The allow-lists come from the keys, found by the kid of a first,
	// permissive parse; the real parse then admits only that algorithm.
	probe, err := jose.ParseEncryptedCompact(token, []jose.KeyAlgorithm{keys.TokenDir, keys.TokenA256KW}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, err
	}
	tk, ok := sk.TokenKeyByID(probe.Header.KeyID)
	if !ok {
		return nil, errors.New("no token key for kid")
	}
	outer, err := jose.ParseEncryptedCompact(token, []jose.KeyAlgorithm{jose.KeyAlgorithm(tk.Algorithm)}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, err
	}
	inner, err := outer.Decrypt(tk.Secret)
	if err != nil {
		return nil, err
	}
	sig, err := jose.ParseSignedCompact(string(inner), []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	pk, ok := pinned.Lookup(sig.Signatures[0].Header.KeyID)
	if !ok {
		return nil, errors.New("no signing key for kid")
	}
	tok, err := jwt.ParseSigned(string(inner), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(pk.Algorithm)})
	if err != nil {
		return nil, err
	}
	var c jwt.Claims
	if err := tok.Claims(pk.Key, &c); err != nil {
		return nil, err
	}
	id := f.Server.Identity
	return &c, c.ValidateWithLeeway(jwt.Expected{Issuer: id, AnyAudience: jwt.Audience{id}, Time: at}, leeway)
}

// goJoseAccepts are the token vectors marked "jose" that go-jose accepts
// even when configured as the spec says: it deviates from RFC 7516 and
// RFC 7518 on their rule, which the spec's "Negative cases" names.
var goJoseAccepts = map[string]string{
	// RFC 7516, Section 5.2, step 10: with dir the Encrypted Key must be
	// empty; go-jose ignores it.
	"token-dir-with-encrypted-key": "a dir token with a non-empty Encrypted Key",
	// go-jose requires an Authentication Tag of at least 16 octets, not
	// exactly 16, and joins ciphertext and tag before it decrypts.
	"token-tag-shifted": "a 17-octet tag made of the last ciphertext octet and the real tag",
}

// TestGoJoseTokenVectors runs the token-role vectors through go-jose, a
// second generic JOSE library besides the panva/jose of the JavaScript
// tests: it opens every valid token and refuses every token vector marked
// "jose" but those in goJoseAccepts, when configured as the spec says.
// go-jose needs both adjustments the spec names: zero leeway instead of
// jwt.DefaultLeeway, and a validation time inside the vector's second
// (now + 0.5 s, whose floor is now), because it deems a token expired only
// after its exp, not at it.
func TestGoJoseTokenVectors(t *testing.T) {
	f, err := vectorfile.Load(filepath.Join("..", "..", vectorfile.Path))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range f.Vectors {
		if v.Role != vectorfile.RoleToken || (v.Result == vectorfile.Invalid && !v.JOSE) {
			continue
		}
		n++
		at := time.Unix(v.Now, 0).Add(500 * time.Millisecond)
		c, err := goJoseOpen(f, v.Token, at, 0)
		if v.JOSE {
			if why, known := goJoseAccepts[v.ID]; known {
				t.Logf("%s: go-jose's known deviation (%s): error %v", v.ID, why, err)
			} else if err == nil {
				t.Errorf("%s: go-jose accepts a vector marked jose", v.ID)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: go-jose refuses a valid token: %v", v.ID, err)
			continue
		}
		x := v.Expected
		if c.Subject != x.Subject || c.Expiry.Time().Unix() != x.Expiry || !slices.Equal(c.Audience, jwt.Audience{f.Server.Identity}) {
			t.Errorf("%s: claims %+v differ from the expected session", v.ID, c)
		}
	}
	if n < 10 {
		t.Fatalf("only %d token vectors", n)
	}

	// Why the spec insists: under go-jose's default leeway, or at the
	// vector's exact second, a token at its exp is accepted.
	i := slices.IndexFunc(f.Vectors, func(v vectorfile.Vector) bool { return v.ID == "token-expired" })
	if i < 0 {
		t.Fatal("no token-expired vector")
	}
	v := f.Vectors[i]
	if _, err := goJoseOpen(f, v.Token, time.Unix(v.Now, 0).Add(500*time.Millisecond), jwt.DefaultLeeway); err != nil {
		t.Errorf("token-expired under jwt.DefaultLeeway: %v; the spec's go-jose example in \"Negative cases\" is out of date", err)
	}
	if _, err := goJoseOpen(f, v.Token, time.Unix(v.Now, 0), 0); err != nil {
		t.Errorf("token-expired at the exact second: %v; the spec's go-jose example in \"Negative cases\" is out of date", err)
	}
}

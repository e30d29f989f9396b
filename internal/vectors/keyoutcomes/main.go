// Command keyoutcomes is Go's half of the JavaScript client's key agreement
// test (client/js/test/vectors.test.js): it loads every key vector of
// testdata/vectors.json with keys.ParseRegistry and keys.ParsePublicSet, and
// each private JWK read from standard input (a JSON array of JWK texts) with
// keys.ParseJWK, and prints the outcomes as JSON:
//
//	{"vectors": {"<id>": {"registry": "valid", "pinned": "bad_key"}, ...},
//	 "private": ["valid", "bad_key", ...]}
//
// An outcome is "valid", "bad_key" for an error wrapping keys.ErrInvalidKey,
// or the text of any other error (which the test reports as a failure). Run
// it from the repository root: go run ./internal/vectors/keyoutcomes.
package main

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/keys"
)

func outcome(err error) string {
	switch {
	case err == nil:
		return "valid"
	case errors.Is(err, keys.ErrInvalidKey):
		return "bad_key"
	}
	return "error: " + err.Error()
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "keyoutcomes:", err)
		os.Exit(1)
	}
}

func run() error {
	f, err := vectorfile.Load(vectorfile.Path)
	if err != nil {
		return err
	}
	type pair struct {
		Registry string `json:"registry"`
		Pinned   string `json:"pinned"`
	}
	out := struct {
		Vectors map[string]pair `json:"vectors"`
		Private []string        `json:"private"`
	}{Vectors: map[string]pair{}, Private: []string{}}
	for _, v := range f.Vectors {
		if v.Role != vectorfile.RoleKey {
			continue
		}
		_, rerr := keys.ParseRegistry([]byte(v.KeySet))
		_, perr := keys.ParsePublicSet([]byte(v.KeySet))
		out.Vectors[v.ID] = pair{outcome(rerr), outcome(perr)}
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	if len(in) > 0 {
		var private []string
		if err := json.Unmarshal(in, &private); err != nil {
			return err
		}
		for _, jwk := range private {
			key, _, _, err := keys.ParseJWK([]byte(jwk))
			if _, ok := key.(crypto.Signer); err == nil && !ok {
				err = fmt.Errorf("%w: not a private key", keys.ErrInvalidKey)
			}
			out.Private = append(out.Private, outcome(err))
		}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// Package vectorkeys loads the keys of a vector file (spec section "Test
// vectors": the members of "keys") for the runners that need them as Go
// values: package protocol's, and the live tests of server and client.
package vectorkeys

import (
	"crypto"
	"encoding/json"
	"fmt"

	"github.com/wsproof/wsproof/internal/vectorfile"
	"github.com/wsproof/wsproof/keys"
)

// Keys are the keys of a vector file.
type Keys struct {
	Server   *keys.ServerKeys // keys.server_private: signing and token keys
	Registry *keys.Set        // keys.registry
	Pinned   *keys.PublicSet  // keys.server_public
	Clients  map[string]crypto.Signer
	Algs     map[string]keys.Algorithm // the algorithm of each client key
}

// Load parses k. Every client key must be private.
func Load(k vectorfile.Keys) (*Keys, error) {
	out := &Keys{Clients: map[string]crypto.Signer{}, Algs: map[string]keys.Algorithm{}}
	var err error
	if out.Server, err = keys.ParseServerKeys(k.ServerPrivate); err != nil {
		return nil, err
	}
	if out.Registry, err = keys.ParseRegistry(k.Registry); err != nil {
		return nil, err
	}
	if out.Pinned, err = keys.ParsePublicSet(k.ServerPublic); err != nil {
		return nil, err
	}
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(k.ClientPrivate, &set); err != nil {
		return nil, err
	}
	for _, raw := range set.Keys {
		key, kid, alg, err := keys.ParseJWK(raw)
		if err != nil {
			return nil, err
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("vectorkeys: client key %q is not private", kid)
		}
		out.Clients[kid], out.Algs[kid] = s, alg
	}
	return out, nil
}

// Package vectorkeys loads the keys of a vector file (spec section "Test
// vectors": the members of "keys") for the runners that need them as Go
// values: package protocol's, and the live tests of server and client.
package vectorkeys

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

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

// Registry is a client key registry that a session script changes between
// steps (its "registry" inputs). It is a keys.Registry and a keys.Checker:
// while made unavailable, Check fails with keys.ErrUnavailable.
type Registry struct {
	set         atomic.Pointer[keys.Set]
	unavailable atomic.Bool
}

var (
	_ keys.Registry = (*Registry)(nil)
	_ keys.Checker  = (*Registry)(nil)
)

// NewRegistry returns a Registry holding s.
func NewRegistry(s *keys.Set) *Registry {
	r := &Registry{}
	r.set.Store(s)
	return r
}

// Lookup implements keys.Registry.
func (r *Registry) Lookup(kid string) (*keys.Entry, bool) { return r.set.Load().Lookup(kid) }

// Check implements keys.Checker.
func (r *Registry) Check() error {
	if r.unavailable.Load() {
		return fmt.Errorf("vectorkeys: script registry: %w", keys.ErrUnavailable)
	}
	return nil
}

// Store replaces the registry's entries with s.
func (r *Registry) Store(s *keys.Set) { r.set.Store(s) }

// SetAvailable makes the registry available or unavailable.
func (r *Registry) SetAvailable(ok bool) { r.unavailable.Store(!ok) }

// Apply carries out a script's registry input: availability, or the
// replacement, addition or removal of the entry of in.KID.
func (r *Registry) Apply(in *vectorfile.SessionInput) error {
	if in.Available != nil {
		r.SetAvailable(*in.Available)
		return nil
	}
	var entries []*keys.Entry
	for _, e := range r.set.Load().Entries() {
		if e.KeyID != in.KID {
			entries = append(entries, e)
		}
	}
	if !in.Remove {
		e, err := keys.ParseEntry([]byte(in.Entry))
		if err != nil {
			return err
		}
		if e.KeyID != in.KID {
			return errors.New("vectorkeys: registry input: entry for another kid")
		}
		entries = append(entries, e)
	}
	s, err := keys.NewSet(entries)
	if err != nil {
		return err
	}
	r.set.Store(s)
	return nil
}

package keys

import (
	"crypto"
	"errors"
	"slices"
	"time"
)

// Entry is one client key in the registry, spec section "Key registry". The
// server authorizes a socket from the Entry of the key whose signature
// verified, and from nothing the client claims.
//
// Entries are immutable once published in a registry: callers must not modify
// them.
type Entry struct {
	KeyID     string           // the JWK "kid", unique in the registry
	Key       crypto.PublicKey // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
	Algorithm Algorithm        // the one algorithm this key signs with
	Subject   string           // "sub": who the key belongs to
	Groups    []string         // "groups": what the key may do; may be empty

	// NotBefore and NotAfter bound the key's validity ("nbf", "exp"); a zero
	// value leaves that side open. The key is valid for NotBefore <= t < NotAfter.
	NotBefore, NotAfter time.Time

	Revoked bool // "revoked"

	// RequireChannelBinding ("cb_required") refuses this key on connections
	// without tls-exporter channel binding.
	RequireChannelBinding bool

	// Thumbprint is the RFC 7638 SHA-256 thumbprint of Key, computed when the
	// entry is loaded; it becomes the session token's cnf.jkt.
	Thumbprint string
}

// ValidAt reports whether t is inside the entry's validity window. It does
// not look at Revoked.
func (e *Entry) ValidAt(t time.Time) bool {
	if !e.NotBefore.IsZero() && t.Before(e.NotBefore) {
		return false
	}
	if !e.NotAfter.IsZero() && !t.Before(e.NotAfter) {
		return false
	}
	return true
}

// InAnyGroup reports whether the entry belongs to at least one of groups.
func (e *Entry) InAnyGroup(groups []string) bool {
	for _, g := range groups {
		if slices.Contains(e.Groups, g) {
			return true
		}
	}
	return false
}

// Registry is the server's database of client keys.
//
// Lookup must be safe for concurrent use and must not block on I/O: the
// handshake calls it while holding a socket's pre-authentication budget.
// Registries backed by a database keep an in-memory view and refresh it
// elsewhere.
type Registry interface {
	Lookup(kid string) (*Entry, bool)
}

// ErrUnavailable is wrapped by the error a [Checker] returns while its
// registry cannot vouch for any key.
var ErrUnavailable = errors.New("keys: registry unavailable")

// Checker is implemented by registries that can lose contact with their
// source of truth, such as a database-backed registry cut off from its
// database for longer than its grace period. While Check returns an error
// (wrapping ErrUnavailable), the server refuses every handshake and ends every
// session with internal_error, which clients retry with backoff, rather than
// with unknown_key, which they would not (spec section "Key registry"). The
// registry calls its owner's change callback when Check's answer changes, so
// that live sessions are rechecked.
//
// Check must be cheap, safe for concurrent use, and must not block on I/O.
type Checker interface {
	Check() error
}

// Set is an immutable, in-memory Registry.
type Set struct {
	entries map[string]*Entry
	order   []string // kids in load order, for listing and marshalling
}

// NewSet returns a Set of entries. It fails with ErrInvalidKey, naming the
// key id, on an entry that breaks the registry rules (CheckKey among them),
// on two key ids equal or equal under ASCII case folding, and on one key
// (by thumbprint) under two key ids, whatever their algorithms: spec section
// "Load-time rules".
func NewSet(entries []*Entry) (*Set, error) {
	s := &Set{entries: make(map[string]*Entry, len(entries))}
	ids := newKeyIDs()
	for _, e := range entries {
		if err := checkEntry(e); err != nil {
			return nil, err
		}
		if err := ids.add(e.KeyID, e.Thumbprint); err != nil {
			return nil, err
		}
		s.entries[e.KeyID] = e
		s.order = append(s.order, e.KeyID)
	}
	return s, nil
}

// Lookup implements Registry.
func (s *Set) Lookup(kid string) (*Entry, bool) {
	e, ok := s.entries[kid]
	return e, ok
}

// Entries returns the entries in load order.
func (s *Set) Entries() []*Entry {
	out := make([]*Entry, len(s.order))
	for i, kid := range s.order {
		out[i] = s.entries[kid]
	}
	return out
}

// Len is the number of entries.
func (s *Set) Len() int { return len(s.order) }

// Package vectorfile is the schema of testdata/vectors.json, spec section
// "Test vectors". The generator (internal/vectors) writes it and the runner
// (protocol's vector test) reads it with Load, which refuses unknown fields:
// the spec tells other implementations to ignore them, but our own runner
// must notice when the generator and the schema drift apart.
package vectorfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Path is the vector file, relative to the repository root.
const Path = "testdata/vectors.json"

// File is the whole vector file.
type File struct {
	Spec      string   `json:"spec"`
	License   string   `json:"license"`
	Comment   string   `json:"comment"`
	Generator string   `json:"generator"`
	Server    Server   `json:"server"`
	Keys      Keys     `json:"keys"`
	Vectors   []Vector `json:"vectors"`
}

// Server is the configuration of the server the vectors describe.
type Server struct {
	Identity          string   `json:"identity"`
	Algs              []string `json:"algs"`
	RequiredGroups    []string `json:"required_groups"`
	ChallengeLifetime int64    `json:"challenge_lifetime"` // seconds
	TokenLifetime     int64    `json:"token_lifetime"`     // seconds
	ClockSkew         int64    `json:"clock_skew"`         // seconds, client side
}

// Keys holds every key the vectors use, as JWK Sets. All private keys here
// are test keys, published on purpose.
type Keys struct {
	ServerPrivate json.RawMessage `json:"server_private"` // signing keys and token keys
	ServerPublic  json.RawMessage `json:"server_public"`  // the set clients pin
	Registry      json.RawMessage `json:"registry"`       // the client key registry
	ClientPrivate json.RawMessage `json:"client_private"` // private halves of registry keys and of the impostor keys
}

// Roles of a vector.
const (
	RoleExchange = "exchange" // a whole successful handshake
	RoleServer   = "server"   // a server verifying a response to its challenge
	RoleClient   = "client"   // a client verifying a challenge
	RoleToken    = "token"    // a server or backend opening a session token
	RoleKey      = "key"      // loading a registry key set
)

// Results of a vector.
const (
	Valid   = "valid"
	Invalid = "invalid"
)

// Vector is one scenario with one expected outcome.
type Vector struct {
	ID      string `json:"id"`
	Comment string `json:"comment"`
	Role    string `json:"role"`
	Rule    string `json:"rule"` // spec section (and step) the vector tests
	Now     int64  `json:"now,omitempty"`

	// ChannelBinding is the tls-exporter value (base64url) of the
	// connection, as the verifying side sees it; absent without TLS.
	ChannelBinding string `json:"channel_binding,omitempty"`

	// Client role: the key id of the client's key (its private half is in
	// keys.client_private), and whether it demands channel binding.
	ClientKID             string `json:"client_kid,omitempty"`
	RequireChannelBinding bool   `json:"require_channel_binding,omitempty"`

	// Session, for a refresh: the socket's current session.
	Session *Session `json:"session,omitempty"`

	Challenge string `json:"challenge,omitempty"`
	Response  string `json:"response,omitempty"`
	Accept    string `json:"accept,omitempty"`
	Token     string `json:"token,omitempty"`
	SID       string `json:"sid,omitempty"` // token role: the socket presenting the token

	// KeySet is the key role's JWK Set as the exact JSON text to load. It
	// is a string, not an object, so that a set that breaks the JSON rules
	// (a member named twice) reaches the loader as written: a JSON parser
	// reading the vector file would otherwise merge the duplicates.
	KeySet string `json:"key_set,omitempty"`

	// JOSE is true when the vector breaks a rule that any conforming JOSE
	// implementation enforces (RFC 7515, 7516, 7518, 7519), so that a
	// generic JOSE library configured as spec section "Negative cases"
	// describes (algorithm allow-list, pinned keys, issuer and audience,
	// zero clock leeway) must refuse it too. The other negative vectors
	// test wsproof's own rules.
	JOSE bool `json:"jose,omitempty"`

	Result   string    `json:"result"`
	Error    string    `json:"error,omitempty"`
	Expected *Expected `json:"expected,omitempty"`
}

// Session identifies the live session of a refresh: its socketID, its
// client key id and, for a client's re-challenge, its token's exp.
type Session struct {
	SID string `json:"sid"`
	KID string `json:"kid"`
	Exp int64  `json:"exp,omitempty"`
}

// Expected is the verified session of a valid vector.
type Expected struct {
	SID                string   `json:"sid"`
	Subject            string   `json:"sub"`
	Groups             []string `json:"groups"`
	ClientKID          string   `json:"ckid"`
	JKT                string   `json:"jkt"`
	ChannelBindingHash string   `json:"cbh,omitempty"`
	Expiry             int64    `json:"exp"`
}

// Marshal returns the canonical bytes of f: indented JSON with a final
// newline, stable for a given File.
func Marshal(f *File) ([]byte, error) { return marshal(f) }

// Parse decodes a vector file strictly: unknown fields are errors.
func Parse(data []byte) (*File, error) { return parse[File](data) }

// Load reads and parses the file at path.
func Load(path string) (*File, error) { return load(path, Parse) }

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parse decodes one JSON document into a T, refusing unknown fields: the
// spec tells other implementations to ignore them, but our own runners must
// notice when the generator and the schema drift apart.
func parse[T any](data []byte) (*T, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v T
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("vectorfile: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("vectorfile: data after the document")
	}
	return &v, nil
}

func load[T any](path string, parse func([]byte) (*T, error)) (*T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(data)
}

package protocol

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/strictjson"
	"github.com/wsproof/wsproof/keys"
)

// ServerConfig configures the server side of the handshake. It must not be
// modified after it is passed to NewServer.
type ServerConfig struct {
	// Identity is the server identity: the challenge's "iss", the response's
	// "aud" and the token's "iss" and "aud". Required. Clients are configured
	// with the same string; the wss:// URL of the service is recommended.
	Identity string

	// Keys holds the server's initial signing and token keys; Server.SetKeys
	// rotates them. Required.
	Keys *keys.ServerKeys

	// Registry is the client key registry. Required. If it also implements
	// keys.Checker, a failing Check turns every lookup into internal_error
	// (spec section "Availability").
	Registry keys.Registry

	// Algorithms lists the client algorithms the server accepts, advertised
	// in each challenge's "algs". Nil means all of keys.Algorithms.
	Algorithms []keys.Algorithm

	// RequiredGroups, when not empty, admits only keys whose registry entry
	// has at least one of these groups. Empty admits every valid key in the
	// registry.
	RequiredGroups []string

	// Authorize, when set, is called after every other check has passed,
	// with the registry entry of the key whose signature verified and nothing
	// the client sent. A non-nil error refuses the socket with access_denied;
	// the error itself is kept for logs and never sent. It must be safe for
	// concurrent use and must not block.
	Authorize func(*keys.Entry) error

	// ChallengeLifetime bounds how long a challenge may be answered. Zero
	// means DefaultChallengeLifetime; more than MaxChallengeLifetime is an
	// error.
	ChallengeLifetime time.Duration

	// TokenLifetime is the lifetime of a session token. Zero means
	// DefaultTokenLifetime.
	TokenLifetime time.Duration

	// RefreshBefore is how long before a token's expiry the server sends a
	// re-challenge (spec section "Refresh"). Zero means the smaller of
	// DefaultRefreshBefore and half the token lifetime; otherwise it must be
	// positive, at most half the token lifetime and at most
	// MaxChallengeLifetime, or NewServer fails.
	RefreshBefore time.Duration

	// HandshakeTimeout bounds the time from a socket's first challenge to
	// its response (handshake_timeout). Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// PingInterval is how often an authenticated socket is pinged; a socket
	// from which nothing arrives for two intervals is closed with
	// keepalive_timeout. Zero means DefaultPingInterval.
	PingInterval time.Duration

	// MaxMessageSize bounds the application messages the server accepts,
	// in octets; clients learn it from the accept. Zero means
	// DefaultMaxMessageSize.
	MaxMessageSize int64

	// MaxQueued bounds the octets of application messages a socket may
	// have waiting to be written; a Send beyond it closes the socket with
	// slow_reader. Zero means DefaultMaxQueued.
	MaxQueued int64

	// DiagnosticReasons makes every Close frame the server sends name its
	// code: the reason text is Code.DiagnosticReason instead of
	// Code.Reason (spec section "Diagnostic reasons"). It is for
	// conformance testing only: it undoes the uniform denials of spec
	// section "Uniform denials and kid enumeration", telling a peer, for
	// one, whether a key id is registered. Never set it where untrusted
	// peers connect. False, the zero value, sends the table's reason text.
	DiagnosticReasons bool
}

// Server holds a validated ServerConfig. It is safe for concurrent use.
type Server struct {
	cfg        ServerConfig // with the defaults filled in
	algs       []keys.Algorithm
	algNames   []string
	challengeD time.Duration
	tokenD     time.Duration
	keys       atomic.Pointer[serverKeys]
	decoys     *decoys
}

// serverKeys is one generation of the server's keys with the verifier built
// from them, swapped as a unit by SetKeys.
type serverKeys struct {
	k      *keys.ServerKeys
	tokens *TokenVerifier
}

// NewServer validates cfg and returns a Server.
func NewServer(cfg *ServerConfig) (*Server, error) {
	s := &Server{cfg: *cfg, algs: cfg.Algorithms, challengeD: cfg.ChallengeLifetime, tokenD: cfg.TokenLifetime}
	if cfg.Identity == "" || len(cfg.Identity) > MaxIdentity {
		return nil, fmt.Errorf("protocol: server identity must be 1 to %d bytes", MaxIdentity)
	}
	if cfg.Keys == nil || cfg.Registry == nil {
		return nil, errors.New("protocol: server config needs Keys and Registry")
	}
	if s.algs == nil {
		s.algs = keys.Algorithms
	}
	if len(s.algs) == 0 {
		return nil, errors.New("protocol: server accepts no algorithm")
	}
	for i, a := range s.algs {
		if _, err := keys.ParseAlgorithm(string(a)); err != nil {
			return nil, err
		}
		if slices.Contains(s.algs[:i], a) {
			return nil, fmt.Errorf("protocol: algorithm %s listed twice", a)
		}
		s.algNames = append(s.algNames, string(a))
	}
	if s.challengeD == 0 {
		s.challengeD = DefaultChallengeLifetime
	}
	if s.challengeD < time.Second || s.challengeD > MaxChallengeLifetime {
		return nil, fmt.Errorf("protocol: challenge lifetime must be 1s to %v", MaxChallengeLifetime)
	}
	if s.tokenD == 0 {
		s.tokenD = DefaultTokenLifetime
	}
	if s.tokenD < time.Second {
		return nil, errors.New("protocol: token lifetime must be at least 1s")
	}
	c := &s.cfg
	c.TokenLifetime, c.ChallengeLifetime = s.tokenD, s.challengeD
	if c.RefreshBefore == 0 {
		c.RefreshBefore = min(DefaultRefreshBefore, s.tokenD/2)
	}
	if c.RefreshBefore <= 0 || c.RefreshBefore > s.tokenD/2 || c.RefreshBefore > MaxChallengeLifetime {
		return nil, fmt.Errorf("protocol: refresh-before %v must be more than 0, at most half the token lifetime %v and at most %v",
			c.RefreshBefore, s.tokenD, MaxChallengeLifetime)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.HandshakeTimeout, DefaultHandshakeTimeout}, {&c.PingInterval, DefaultPingInterval}} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return nil, errors.New("protocol: negative timeout in server config")
		}
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = DefaultMaxQueued
	}
	if c.MaxMessageSize < 1 || c.MaxMessageSize > MaxMessageSizeLimit || c.MaxQueued < 1 {
		return nil, fmt.Errorf("protocol: MaxMessageSize must be 1 to %d and MaxQueued positive", MaxMessageSizeLimit)
	}
	if err := s.SetKeys(cfg.Keys); err != nil {
		return nil, err
	}
	s.decoys = theDecoys()
	s.cfg.Keys = nil // the current keys live in s.keys only
	return s, nil
}

// SetKeys replaces the server's keys, for rotation (spec section "Server key
// rotation"): handshakes that start afterwards sign and seal with the first
// key of each list, and every listed key verifies and decrypts, so objects
// issued before keep verifying while their keys stay listed. k must not be
// modified afterwards. SetKeys is safe to call concurrently with everything else.
func (s *Server) SetKeys(k *keys.ServerKeys) error {
	if k == nil {
		return errors.New("protocol: nil server keys")
	}
	if err := k.Check(); err != nil {
		return err
	}
	tokens, err := NewTokenVerifier(s.cfg.Identity, k.Token, k.Public())
	if err != nil {
		return err
	}
	s.keys.Store(&serverKeys{k: k, tokens: tokens})
	return nil
}

// Keys returns the server's current keys. The caller must not modify them.
func (s *Server) Keys() *keys.ServerKeys { return s.keys.Load().k }

// Tokens returns a verifier for the tokens this server issues, with the keys
// current at the time of the call.
func (s *Server) Tokens() *TokenVerifier { return s.keys.Load().tokens }

// Session is the verified state of an authenticated socket, what the
// application sees with each message. A refresh produces a new Session; a
// Session is never modified.
type Session struct {
	SocketID     string
	KeyID        string // the client key id
	Subject      string
	Groups       []string
	Thumbprint   string // RFC 7638 thumbprint of the client key (cnf.jkt)
	ChannelBound bool   // the response carried a verified tls-exporter binding
	Token        string // the session token (nested JWT)
	IssuedAt     time.Time
	Expiry       time.Time
}

// ServerHandshake is the server's side of one challenge-response exchange on
// one socket. It is single-use and not safe for concurrent use.
type ServerHandshake struct {
	s         *Server
	challenge []byte
	hash      [sha256.Size]byte // SHA-256 of the challenge bytes
	sid       string
	nonce     string
	exp       time.Time
	exporter  []byte   // nil when TLS does not end here
	prev      *Session // the session being refreshed, or nil
	done      bool
}

// ChallengeClaims is the payload of a challenge (spec section
// "Challenge"), its members in the order the spec lists them. A server
// writes it as encoding/json would (appendJSON); the conformance suite and
// the vector generator build challenges, well-formed or not, from it.
type ChallengeClaims struct {
	Iss   string   `json:"iss"`
	Sid   string   `json:"sid"`
	Nonce string   `json:"nonce"`
	Iat   int64    `json:"iat"`
	Exp   int64    `json:"exp"`
	Algs  []string `json:"algs"`
	CB    string   `json:"cb"`
}

// appendJSON appends the claims byte for byte as encoding/json.Marshal
// writes them, without its reflection.
func (c *ChallengeClaims) appendJSON(b []byte) []byte {
	b = append(b, `{"iss":`...)
	b = strictjson.AppendString(b, c.Iss)
	b = append(b, `,"sid":`...)
	b = strictjson.AppendString(b, c.Sid)
	b = append(b, `,"nonce":`...)
	b = strictjson.AppendString(b, c.Nonce)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.Iat, 10)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.Exp, 10)
	b = append(b, `,"algs":`...)
	b = strictjson.AppendStrings(b, c.Algs)
	b = append(b, `,"cb":`...)
	b = strictjson.AppendString(b, c.CB)
	return append(b, '}')
}

// Start begins the handshake on a new socket: it draws a socketID and nonce
// from rand and returns the signed challenge message to send as a text
// message. exporter is the connection's RFC 9266 tls-exporter value when TLS
// terminates at this server, or nil; when set, the client must bind to it.
func (s *Server) Start(rand io.Reader, now time.Time, exporter []byte) (*ServerHandshake, []byte, error) {
	var sid [SocketIDSize]byte
	if _, err := io.ReadFull(rand, sid[:]); err != nil {
		return nil, nil, wrap(CodeInternalError, err)
	}
	return s.challenge(rand, now, exporter, b64u.Encode(sid[:]), now.Add(s.challengeD), nil)
}

// refresh begins a re-challenge on the live socket of sess (spec section
// "Refresh"): it expires with the current token, or MaxChallengeLifetime
// after now if that is sooner, so that a client has all the time the token
// leaves to answer. The caller makes sure the token outlives now by at least
// a second.
func (s *Server) refresh(sess *Session, rand io.Reader, now time.Time, exporter []byte) (*ServerHandshake, []byte, error) {
	exp := min(sess.Expiry.Unix(), now.Unix()+int64(MaxChallengeLifetime/time.Second))
	return s.challenge(rand, now, exporter, sess.SocketID, time.Unix(exp, 0), sess)
}

func (s *Server) challenge(rand io.Reader, now time.Time, exporter []byte, sid string, exp time.Time, prev *Session) (*ServerHandshake, []byte, error) {
	if exporter != nil && len(exporter) != ExporterSize {
		return nil, nil, failf(CodeInternalError, "tls-exporter value of %d bytes", len(exporter))
	}
	var nonce [NonceSize]byte
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return nil, nil, wrap(CodeInternalError, err)
	}
	c := ChallengeClaims{
		Iss:   s.cfg.Identity,
		Sid:   sid,
		Nonce: b64u.Encode(nonce[:]),
		Iat:   now.Unix(),
		Exp:   exp.Unix(),
		Algs:  s.algNames,
		CB:    BindingNone,
	}
	if exporter != nil {
		c.CB = BindingTLSExporter
	}
	var buf [512]byte
	msg, err := signJWS(rand, &s.Keys().Signing[0], TypChallenge, c.appendJSON(buf[:0]))
	if err != nil {
		return nil, nil, wrap(CodeInternalError, err)
	}
	h := &ServerHandshake{
		s:         s,
		challenge: msg,
		hash:      sha256.Sum256(msg),
		sid:       sid,
		nonce:     c.Nonce,
		exp:       time.Unix(c.Exp, 0),
		exporter:  exporter,
		prev:      prev,
	}
	return h, h.challenge, nil
}

// SocketID returns the socketID of the handshake's socket.
func (h *ServerHandshake) SocketID() string { return h.sid }

// Expiry returns the time after which the challenge cannot be answered.
func (h *ServerHandshake) Expiry() time.Time { return h.exp }

// response is a response message after the structural and transcript steps.
type response struct {
	jws *compactJWS
	cb  []byte // the "cb" claim, or nil
}

// ReadResponse runs spec section "Server: verifying a response" on msg and, when every
// step passes, issues a session token and returns the new Session and the
// accept message to send. It may be called once; any failure is a
// *ProtocolError and the socket must be closed with its code.
func (h *ServerHandshake) ReadResponse(msg []byte, rand io.Reader, now time.Time) (*Session, []byte, error) {
	sess, _, accept, err := h.readResponse(msg, rand, now)
	return sess, accept, err
}

// readResponse is ReadResponse that also returns the registry entry the
// session was issued from.
func (h *ServerHandshake) readResponse(msg []byte, rand io.Reader, now time.Time) (*Session, *keys.Entry, []byte, error) {
	if h.done {
		return nil, nil, nil, fail(CodeUnexpectedMessage, "handshake already used")
	}
	h.done = true
	r, err := h.checkResponse(msg, now)
	if err != nil {
		return nil, nil, nil, err
	}
	e, err := h.checkKey(r, now)
	if err != nil {
		return nil, nil, nil, err
	}
	sess, accept, err := h.accept(e, rand, now)
	return sess, e, accept, err
}

// checkResponse runs steps 1 to 11: structure, transcript and freshness.
// None of them needs the registry.
func (h *ServerHandshake) checkResponse(msg []byte, now time.Time) (*response, error) {
	if len(msg) > MaxHandshakeMessage {
		return nil, fail(CodeTooLarge, "response too large")
	}
	j, err := parseJWSHeader(msg, TypResponse)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(h.s.algs, j.alg) {
		return nil, fail(CodeAlgNotAllowed, "algorithm not accepted by this server")
	}
	// The payload is read before the signature is checked so that the
	// cheap transcript checks run before any public-key operation; nothing
	// read here is trusted until the signature verifies in checkKey.
	claims, err := parseObject(j.payload)
	if err != nil {
		return nil, err
	}
	aud, err := claims.str("aud")
	if err != nil {
		return nil, err
	}
	if len(aud) == 0 || len(aud) > MaxIdentity {
		return nil, missing("aud")
	}
	sid, err := claims.b64("sid", SocketIDSize, maxSocketIDLen)
	if err != nil {
		return nil, err
	}
	nonce, err := claims.b64("nonce", NonceSize, NonceSize)
	if err != nil {
		return nil, err
	}
	cha, err := claims.b64Bytes("cha", sha256.Size)
	if err != nil {
		return nil, err
	}
	r := &response{jws: j}
	if claims.Has("cb") {
		if r.cb, err = claims.b64Bytes("cb", ExporterSize); err != nil {
			return nil, err
		}
	}
	if subtle.ConstantTimeCompare(cha, h.hash[:]) != 1 {
		return nil, fail(CodeTranscriptMismatch, "cha is not the hash of this socket's challenge")
	}
	if sid != h.sid {
		return nil, fail(CodeSocketMismatch, "sid is not this socket's")
	}
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(h.nonce)) != 1 {
		return nil, fail(CodeNonceMismatch, "nonce is not the challenge's")
	}
	if aud != h.s.cfg.Identity {
		return nil, fail(CodeAudienceMismatch, "aud is not this server")
	}
	if !now.Before(h.exp) {
		return nil, fail(CodeChallengeExpired, "challenge expired")
	}
	return r, nil
}

// lookup finds kid in the registry. A registry that cannot currently vouch
// for any key (a keys.Checker failing) fails with internal_error, which
// clients retry, rather than unknown_key, which they do not (spec section
// "Key registry").
func (s *Server) lookup(kid string) (*keys.Entry, error) {
	if c, ok := s.cfg.Registry.(keys.Checker); ok {
		if err := c.Check(); err != nil {
			return nil, wrap(CodeInternalError, err)
		}
	}
	e, ok := s.cfg.Registry.Lookup(kid)
	if !ok {
		return nil, fail(CodeUnknownKey, "key id not in the registry")
	}
	return e, nil
}

// checkKey runs steps 12 to 19: the registry, the signature, the key's state,
// channel binding and authorization.
//
// Steps 12 to 14 refuse only after the signature has been verified against a
// decoy key of the header's algorithm, and step 15 verifies a malformed RSA
// signature against a decoy too, so that every refusal up to step 15 costs
// the same one verification whether kid names a registered key or not (spec
// section "Timing"): the time to the refusal does not tell an attacker which
// key ids are registered.
func (h *ServerHandshake) checkKey(r *response, now time.Time) (*keys.Entry, error) {
	e, err := h.s.lookup(r.jws.kid)
	switch {
	case err != nil:
	case h.prev != nil && e.KeyID != h.prev.KeyID:
		err = fail(CodeKeyMismatch, "refresh signed by another key than the session's")
	case r.jws.alg != e.Algorithm:
		err = fail(CodeAlgMismatch, "alg is not the key's registered algorithm")
	}
	if err != nil {
		if CodeOf(err) != CodeInternalError {
			_ = h.s.verify(r.jws, nil) // for its time only
		}
		return nil, err
	}
	if err := h.s.verify(r.jws, e.Key); err != nil {
		return nil, err
	}
	if err := h.s.keyState(e, now); err != nil {
		return nil, err
	}
	if h.exporter != nil {
		if r.cb == nil || subtle.ConstantTimeCompare(r.cb, h.exporter) != 1 {
			return nil, fail(CodeChannelBindingMismatch, "tls-exporter binding missing or wrong")
		}
	} else {
		if r.cb != nil {
			return nil, fail(CodeChannelBindingMismatch, "cb present without channel binding in force")
		}
		if e.RequireChannelBinding {
			return nil, fail(CodeChannelBindingRequired, "key requires channel binding")
		}
	}
	if err := h.s.authorize(e); err != nil {
		return nil, err
	}
	return e, nil
}

// verify runs step 15 on j with the registered key pub, or, when pub is nil,
// the same work with the decoy key of j's algorithm, which never verifies
// (decoys.verify).
func (s *Server) verify(j *compactJWS, pub crypto.PublicKey) error {
	return s.decoys.verify(j, pub)
}

// decoys are the keys a server verifies against when a response's kid names
// no registered key (spec section "Timing"): one per ECDSA curve (its
// generator) and one Ed25519 key, and for RSA one public key for each modulus length a
// registered key may have (256 to 512 octets), whose modulus is an odd number
// of exactly that length.
//
// They are fixed or derived from fixed labels with SHAKE256, once per
// process, and are the same for every Server: a decoy only has to cost what a registered
// key of its kind costs, and the result of a verification against it is
// thrown away, so it need not be secret. Drawing them from crypto/rand would
// shift the random stream that the test vectors are generated from.
//
// An RSA verification costs what the length of the modulus dictates (the
// arithmetic of crypto/rsa is constant time in the values, with e = 65537
// fixed), so a decoy modulus need not be a product of two primes, and no one
// knows a signature it accepts. The decoy is chosen by the length of the
// signature, which is the length of the modulus of the key the attacker has
// in mind: a fixed 2048-bit decoy would refuse unknown kids sooner than bad
// signatures from 3072- and 4096-bit keys (by most of a verification at
// 4096 bits), and a fixed 4096-bit one would refuse them later than bad
// signatures from 2048-bit keys.
type decoys struct {
	keys map[keys.Algorithm]crypto.PublicKey // ES256, ES384, ES512, EdDSA
	rsa  []*rsa.PublicKey                    // [n-minRSALen]: modulus of n octets
}

const (
	minRSALen = keys.MinRSABits / 8
	maxRSALen = keys.MaxRSABits / 8
)

var theDecoys = sync.OnceValue(func() *decoys {
	d := &decoys{keys: map[keys.Algorithm]crypto.PublicKey{}}
	for alg, c := range map[keys.Algorithm]elliptic.Curve{keys.ES256: elliptic.P256(), keys.ES384: elliptic.P384(), keys.ES512: elliptic.P521()} {
		// The curve's generator: a point like any other to verify against,
		// where deriving one from a label would multiply the generator and
		// so build its precomputed table, 0.8 MB for P-384 and P-521 that a
		// server with no such keys would otherwise never build.
		p := c.Params()
		k, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, p.Gx.FillBytes(make([]byte, (p.BitSize+7)/8))...),
			p.Gy.FillBytes(make([]byte, (p.BitSize+7)/8))...))
		if err != nil {
			panic(err) // fixed input
		}
		d.keys[alg] = k
	}
	d.keys[keys.EdDSA] = ed25519.NewKeyFromSeed(sha3.SumSHAKE256([]byte("wsproof decoy EdDSA"), ed25519.SeedSize)).Public()
	b := sha3.SumSHAKE256([]byte("wsproof decoy RSA"), maxRSALen)
	for n := minRSALen; n <= maxRSALen; n++ {
		m := slices.Clone(b[:n])
		m[0] |= 0x80 // exactly n octets
		m[n-1] |= 1  // odd, as crypto/rsa requires
		d.rsa = append(d.rsa, &rsa.PublicKey{N: new(big.Int).SetBytes(m), E: keys.RSAExponent})
	}
	return d
})

// rsaKey returns the decoy whose modulus is n octets long, or nil if no
// registered key has that length.
func (d *decoys) rsaKey(n int) *rsa.PublicKey {
	if n < minRSALen || n > maxRSALen {
		return nil
	}
	return d.rsa[n-minRSALen]
}

// verify checks the signature of j as compactJWS.verify does, with the
// registered key pub, spending one signature verification of the size the
// signature claims whatever the key and the signature: pub nil stands for
// the decoy of j's algorithm, whose verification never succeeds.
//
// crypto/rsa refuses before any exponentiation a signature whose length is
// not the modulus's or whose value is not below the modulus; an attacker
// who holds a client's public key could send one to tell a registered key
// (refused at once) from an unknown one (verified against a decoy). Such a
// signature is verified instead, for its time only, against the decoy
// modulus of its length, with its first octet cleared so that it is below
// that modulus. A signature of a length no RSA key has is refused at once
// whatever the kid.
func (d *decoys) verify(j *compactJWS, pub crypto.PublicKey) error {
	input, sig, err := j.signed()
	if err != nil {
		return err
	}
	decoy := pub == nil
	switch j.alg {
	case keys.RS256, keys.PS256:
		k, _ := pub.(*rsa.PublicKey)
		if k == nil || len(sig) != k.Size() || !below(sig, k.N) {
			if k = d.rsaKey(len(sig)); k == nil {
				return wrap(CodeBadSignature, keys.ErrBadSignature)
			}
			if !below(sig, k.N) {
				sig = append([]byte{0}, sig[1:]...)
			}
			pub, decoy = k, true
		}
	default:
		if decoy {
			pub = d.keys[j.alg]
		}
	}
	err = keys.Verify(pub, j.alg, input, sig)
	if decoy {
		err = keys.ErrBadSignature
	}
	if err != nil {
		return wrap(CodeBadSignature, err)
	}
	return nil
}

// below reports whether the big-endian integer b, of n's length in octets,
// is less than n. Both are public.
func below(b []byte, n *big.Int) bool {
	return bytes.Compare(b, n.FillBytes(make([]byte, len(b)))) < 0
}

func (s *Server) keyState(e *keys.Entry, now time.Time) error {
	if e.Revoked {
		return fail(CodeKeyRevoked, "key revoked")
	}
	if !e.ValidAt(now) {
		return fail(CodeKeyNotValid, "key outside its validity window")
	}
	return nil
}

func (s *Server) authorize(e *keys.Entry) error {
	if len(s.cfg.RequiredGroups) > 0 && !e.InAnyGroup(s.cfg.RequiredGroups) {
		return fail(CodeAccessDenied, "key in none of the required groups")
	}
	if s.cfg.Authorize != nil {
		if err := s.cfg.Authorize(e); err != nil {
			return wrap(CodeAccessDenied, err)
		}
	}
	return nil
}

// recheck returns the registry entry of the live session sess if the session
// may continue under the registry as it is now (spec section "Revocation"):
// its key is still registered under the same key id, not revoked, inside its
// validity window, authorized, and bound to the TLS channel if its entry now
// requires that. The error's code is the one a handshake would fail with;
// internal_error means the registry is unavailable.
func (s *Server) recheck(sess *Session, now time.Time) (*keys.Entry, error) {
	e, err := s.lookup(sess.KeyID)
	if err != nil {
		return nil, err
	}
	if e.Thumbprint != sess.Thumbprint {
		return nil, fail(CodeKeyMismatch, "key id now names another key")
	}
	if err := s.keyState(e, now); err != nil {
		return nil, err
	}
	if e.RequireChannelBinding && !sess.ChannelBound {
		return nil, fail(CodeChannelBindingRequired, "key now requires channel binding")
	}
	if err := s.authorize(e); err != nil {
		return nil, err
	}
	return e, nil
}

// acceptMessage is the accept message (spec section "Accept"). The tags
// say how encoding/json would write it, which appendJSON does.
type acceptMessage struct {
	Token   string   `json:"token"`
	Sub     string   `json:"sub"`
	Groups  []string `json:"groups"`
	Exp     int64    `json:"exp"`
	MaxSize int64    `json:"max_size"`
}

// appendJSON appends the message byte for byte as encoding/json.Marshal
// writes it, without its reflection.
func (m *acceptMessage) appendJSON(b []byte) []byte {
	b = append(b, `{"token":`...)
	b = strictjson.AppendString(b, m.Token)
	b = append(b, `,"sub":`...)
	b = strictjson.AppendString(b, m.Sub)
	b = append(b, `,"groups":`...)
	b = strictjson.AppendStrings(b, m.Groups)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, m.Exp, 10)
	b = append(b, `,"max_size":`...)
	b = strconv.AppendInt(b, m.MaxSize, 10)
	return append(b, '}')
}

// accept issues the session token for e and builds the accept message.
func (h *ServerHandshake) accept(e *keys.Entry, rand io.Reader, now time.Time) (*Session, []byte, error) {
	groups := e.Groups
	if groups == nil {
		groups = []string{}
	}
	// A token never outlives the key it is bound to.
	exp := now.Add(h.s.tokenD)
	if !e.NotAfter.IsZero() && e.NotAfter.Before(exp) {
		exp = e.NotAfter
	}
	c := &TokenClaims{
		Issuer:      h.s.cfg.Identity,
		Subject:     e.Subject,
		Audience:    h.s.cfg.Identity,
		SocketID:    h.sid,
		IssuedAt:    now.Unix(),
		NotBefore:   now.Unix(),
		Expiry:      exp.Unix(),
		Cnf:         Confirmation{JKT: e.Thumbprint},
		Groups:      groups,
		ClientKeyID: e.KeyID,
	}
	if h.exporter != nil {
		sum := sha256.Sum256(h.exporter)
		c.ChannelBindingHash = b64u.Encode(sum[:])
	}
	token, err := issueToken(h.s.Keys(), c, rand)
	if err != nil {
		return nil, nil, wrap(CodeInternalError, err)
	}
	m := acceptMessage{Token: token, Sub: c.Subject, Groups: groups, Exp: c.Expiry, MaxSize: h.s.cfg.MaxMessageSize}
	msg := m.appendJSON(make([]byte, 0, len(token)+256+len(c.Subject)))
	return &Session{
		SocketID:     h.sid,
		KeyID:        e.KeyID,
		Subject:      e.Subject,
		Groups:       groups,
		Thumbprint:   e.Thumbprint,
		ChannelBound: h.exporter != nil,
		Token:        token,
		IssuedAt:     time.Unix(c.IssuedAt, 0),
		Expiry:       time.Unix(c.Expiry, 0),
	}, msg, nil
}

// resume rebuilds the state of a handshake from a challenge this server
// signed. The test vectors describe a server by the challenge it sent, so the
// vector runner needs this; a server never does.
func (s *Server) resume(challenge []byte, exporter []byte, prev *Session) (*ServerHandshake, error) {
	j, err := parseJWSHeader(challenge, TypChallenge)
	if err != nil {
		return nil, err
	}
	pk, ok := s.Tokens().SigningKeys.Lookup(j.kid)
	if !ok {
		return nil, fail(CodeUnknownKey, "challenge not signed by this server")
	}
	payload, err := j.verify(pk.Key)
	if err != nil {
		return nil, err
	}
	o, err := parseObject(payload)
	if err != nil {
		return nil, err
	}
	sid, err := o.b64("sid", SocketIDSize, maxSocketIDLen)
	if err != nil {
		return nil, err
	}
	nonce, err := o.b64("nonce", NonceSize, NonceSize)
	if err != nil {
		return nil, err
	}
	exp, err := o.date("exp")
	if err != nil {
		return nil, err
	}
	return &ServerHandshake{s: s, challenge: challenge, hash: sha256.Sum256(challenge), sid: sid, nonce: nonce,
		exp: time.Unix(exp, 0), exporter: exporter, prev: prev}, nil
}

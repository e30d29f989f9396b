package protocol

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
	"github.com/wsproof/wsproof/internal/strictjson"
	"github.com/wsproof/wsproof/keys"
)

// ClientConfig configures the client side of the handshake. It must not be
// modified after it is passed to NewClient.
type ClientConfig struct {
	// KeyID is the client key's id in the server's registry. Required.
	KeyID string

	// Signer is the client's private key. It may be any crypto.Signer (a
	// TPM, a secure element, an ssh-agent key); ECDSA signers return ASN.1
	// DER as the crypto.Signer contract says. Required.
	Signer crypto.Signer

	// Algorithm is the key's registered algorithm. Zero means the only
	// algorithm the key type allows; RSA keys, which allow RS256 and PS256,
	// must set it.
	Algorithm keys.Algorithm

	// ServerKeys is the pinned set of server signing keys. A challenge signed
	// by any other key is refused. Required.
	ServerKeys *keys.PublicSet

	// ServerIdentity is the server identity every challenge's "iss" must
	// equal (spec section "Server identity"). Required: a client that
	// accepted any identity signed by a pinned key could be relayed to
	// another endpoint of the same server, one that does not bind to the
	// TLS channel. IdentityFromURL derives the default from the URL dialed.
	ServerIdentity string

	// InsecureAllowUnbound accepts challenges without channel binding (cb
	// "none") on a TLS connection, for servers behind a proxy that
	// terminates TLS (spec section "TLS terminated at a proxy"). Without
	// it, a client whose connection is TLS refuses them with
	// channel_binding_required, which is what stops a relay that terminates
	// the client's TLS; with it, such a relay can use the client's session.
	InsecureAllowUnbound bool

	// ClockSkew is how far the client's clock may disagree with the
	// server's when checking a challenge's times. Zero means
	// DefaultClockSkew.
	ClockSkew time.Duration

	// MaxMessageSize bounds the application messages the client accepts,
	// in octets. Zero means DefaultMaxMessageSize.
	MaxMessageSize int64

	// HandshakeTimeout bounds the time from the upgrade to the accept
	// (handshake_timeout). Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// PingInterval is how often the client pings an authenticated socket;
	// a socket from which nothing arrives for two intervals is closed with
	// keepalive_timeout. Zero means DefaultPingInterval.
	PingInterval time.Duration

	// DiagnosticReasons makes every Close frame the client sends name its
	// code, as ServerConfig.DiagnosticReasons does for a server (spec
	// section "Diagnostic reasons"): for conformance testing, so that a
	// test server can tell which check refused its challenge. False, the
	// zero value, sends the table's reason text.
	DiagnosticReasons bool
}

// Client holds a validated ClientConfig. It is safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	key  keys.SigningKey
	skew time.Duration
}

// Reason is the reason text this client sends with code: Code.Reason, or
// Code.DiagnosticReason when the configuration asks for diagnostic reasons.
func (c *Client) Reason(code Code) string {
	if c.cfg.DiagnosticReasons {
		return code.DiagnosticReason()
	}
	return code.Reason()
}

// NewClient validates cfg and returns a Client.
func NewClient(cfg *ClientConfig) (*Client, error) {
	if cfg.KeyID == "" || cfg.Signer == nil || cfg.ServerKeys == nil || cfg.ServerIdentity == "" {
		return nil, errors.New("protocol: client config needs KeyID, Signer, ServerKeys and ServerIdentity")
	}
	if len(cfg.ServerIdentity) > MaxIdentity {
		return nil, fmt.Errorf("protocol: server identity must be 1 to %d bytes", MaxIdentity)
	}
	alg := cfg.Algorithm
	if alg == "" {
		algs := keys.AlgorithmsFor(cfg.Signer.Public())
		if len(algs) != 1 {
			return nil, errors.New("protocol: client config needs Algorithm for this key type")
		}
		alg = algs[0]
	}
	if err := keys.CheckKey(alg, cfg.Signer.Public()); err != nil {
		return nil, err
	}
	c := &Client{cfg: *cfg, key: keys.SigningKey{KeyID: cfg.KeyID, Algorithm: alg, Signer: cfg.Signer}, skew: cfg.ClockSkew}
	if c.skew == 0 {
		c.skew = DefaultClockSkew
	}
	if c.skew < 0 {
		return nil, fmt.Errorf("protocol: negative clock skew")
	}
	cc := &c.cfg
	if cc.MaxMessageSize == 0 {
		cc.MaxMessageSize = DefaultMaxMessageSize
	}
	if cc.MaxMessageSize < 1 || cc.MaxMessageSize > MaxMessageSizeLimit {
		return nil, fmt.Errorf("protocol: MaxMessageSize must be 1 to %d", MaxMessageSizeLimit)
	}
	if cc.HandshakeTimeout == 0 {
		cc.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cc.PingInterval == 0 {
		cc.PingInterval = DefaultPingInterval
	}
	if cc.HandshakeTimeout < 0 || cc.PingInterval < 0 {
		return nil, errors.New("protocol: negative timeout in client config")
	}
	return c, nil
}

// Algorithm returns the algorithm the client signs with.
func (c *Client) Algorithm() keys.Algorithm { return c.key.Algorithm }

// ClientSession is what the client knows of its authenticated socket.
type ClientSession struct {
	SocketID       string
	ServerKeyID    string // the pinned key that signed the challenge
	Subject        string
	Groups         []string
	ChannelBound   bool      // the response carried a tls-exporter binding
	Token          string    // opaque to the client
	Expiry         time.Time // the token's expiry
	MaxMessageSize int64     // the largest application message the server accepts
}

// ClientHandshake is the client's side of one exchange. It is single-use and
// not safe for concurrent use.
type ClientHandshake struct {
	c          *Client
	prev       *ClientSession
	tls        bool // the connection is TLS, even without an exporter value (TLS 1.2)
	sid        string
	serverKey  string
	bound      bool
	challenged bool
	accepted   bool
}

// Handshake begins the client side of the handshake on a new socket. The
// socket counts as TLS when ReadChallenge is given an exporter value.
func (c *Client) Handshake() *ClientHandshake { return &ClientHandshake{c: c} }

// Refresh begins the answer to a re-challenge on the live socket of sess.
func (c *Client) Refresh(sess *ClientSession) *ClientHandshake {
	return &ClientHandshake{c: c, prev: sess}
}

// responseClaims are the claims of a response (spec section "Response").
// The tags say how encoding/json would write them, which appendJSON does.
type responseClaims struct {
	Aud   string `json:"aud"`
	Sid   string `json:"sid"`
	Nonce string `json:"nonce"`
	Cha   string `json:"cha"`
	CB    string `json:"cb,omitempty"`
}

// appendJSON appends the claims as encoding/json.Marshal writes them (the
// members in the struct's order, cb left out when empty), without its
// reflection, which a device's client need not link.
func (r *responseClaims) appendJSON(b []byte) []byte {
	b = append(b, `{"aud":`...)
	b = strictjson.AppendString(b, r.Aud)
	b = append(b, `,"sid":`...)
	b = strictjson.AppendString(b, r.Sid)
	b = append(b, `,"nonce":`...)
	b = strictjson.AppendString(b, r.Nonce)
	b = append(b, `,"cha":`...)
	b = strictjson.AppendString(b, r.Cha)
	if r.CB != "" {
		b = append(b, `,"cb":`...)
		b = strictjson.AppendString(b, r.CB)
	}
	return append(b, '}')
}

// ReadChallenge runs spec section "Client: verifying a challenge" on msg and returns
// the signed response message to send. exporter is the connection's RFC 9266
// tls-exporter value, or nil without TLS. It may be called once.
func (h *ClientHandshake) ReadChallenge(msg []byte, rand io.Reader, now time.Time, exporter []byte) ([]byte, error) {
	if h.challenged {
		return nil, fail(CodeUnexpectedMessage, "challenge already answered")
	}
	h.challenged = true
	if len(msg) > MaxHandshakeMessage {
		return nil, fail(CodeTooLarge, "challenge too large")
	}
	j, err := parseJWSHeader(msg, TypChallenge)
	if err != nil {
		return nil, err
	}
	pk, ok := h.c.cfg.ServerKeys.Lookup(j.kid)
	if !ok {
		return nil, fail(CodeUnknownKey, "challenge signed by a key that is not pinned")
	}
	if pk.Algorithm != j.alg {
		return nil, fail(CodeAlgMismatch, "alg is not the pinned key's algorithm")
	}
	payload, err := j.verify(pk.Key)
	if err != nil {
		return nil, err
	}
	o, err := parseObject(payload)
	if err != nil {
		return nil, err
	}
	iss, err := o.str("iss")
	if err != nil {
		return nil, err
	}
	if len(iss) == 0 || len(iss) > MaxIdentity {
		return nil, missing("iss")
	}
	sid, err := o.b64("sid", SocketIDSize, maxSocketIDLen)
	if err != nil {
		return nil, err
	}
	nonce, err := o.b64("nonce", NonceSize, NonceSize)
	if err != nil {
		return nil, err
	}
	iat, err := o.date("iat")
	if err != nil {
		return nil, err
	}
	exp, err := o.date("exp")
	if err != nil {
		return nil, err
	}
	if exp <= iat || exp-iat > int64(MaxChallengeLifetime/time.Second) {
		return nil, fail(CodeMalformed, "challenge lifetime out of range")
	}
	algs, err := o.strs("algs", len(keys.Algorithms), 16)
	if err != nil || len(algs) == 0 {
		return nil, missing("algs")
	}
	for i, a := range algs {
		if _, err := keys.ParseAlgorithm(a); err != nil || slices.Contains(algs[:i], a) {
			return nil, missing("algs")
		}
	}
	cb, err := o.str("cb")
	if err != nil {
		return nil, err
	}
	if cb != BindingTLSExporter && cb != BindingNone {
		return nil, missing("cb")
	}
	if iss != h.c.cfg.ServerIdentity {
		return nil, &ProtocolError{Code: CodeAudienceMismatch, Err: &IdentityError{Want: h.c.cfg.ServerIdentity, Got: iss}}
	}
	skew := int64(h.c.skew / time.Second)
	if t := now.Unix(); t+skew < iat || t-skew >= exp {
		return nil, fail(CodeChallengeExpired, "challenge not fresh")
	}
	r := responseClaims{Aud: iss, Sid: sid, Nonce: nonce}
	switch {
	case cb == BindingTLSExporter && exporter == nil:
		return nil, fail(CodeChannelBindingMismatch, "server demands tls-exporter binding but this connection has no TLS")
	case cb == BindingTLSExporter:
		if len(exporter) != ExporterSize {
			return nil, failf(CodeInternalError, "tls-exporter value of %d bytes", len(exporter))
		}
		r.CB = b64u.Encode(exporter)
	case (h.tls || exporter != nil) && !h.c.cfg.InsecureAllowUnbound:
		return nil, fail(CodeChannelBindingRequired, "challenge without channel binding on a TLS connection")
	}
	if !slices.Contains(algs, string(h.c.key.Algorithm)) {
		return nil, fail(CodeAlgNotAllowed, "server does not accept this client's algorithm")
	}
	if h.prev != nil && sid != h.prev.SocketID {
		return nil, fail(CodeSocketMismatch, "re-challenge for another socket")
	}
	if h.prev != nil && exp > h.prev.Expiry.Unix() {
		return nil, fail(CodeMalformed, "re-challenge expires after the session's token")
	}
	sum := sha256.Sum256(msg)
	r.Cha = b64u.Encode(sum[:])
	payload = r.appendJSON(make([]byte, 0, 256+len(r.Aud)))
	resp, err := signJWS(rand, &h.c.key, TypResponse, payload)
	if err != nil {
		return nil, wrap(CodeInternalError, err)
	}
	h.sid, h.serverKey, h.bound = sid, j.kid, r.CB != ""
	return resp, nil
}

// ReadAccept reads the server's accept message after the response was sent
// and returns the session. It may be called once, after ReadChallenge
// succeeded.
func (h *ClientHandshake) ReadAccept(msg []byte, now time.Time) (*ClientSession, error) {
	if h.sid == "" || h.accepted {
		return nil, fail(CodeUnexpectedMessage, "accept without an outstanding response")
	}
	h.accepted = true
	if len(msg) > MaxAcceptMessage {
		return nil, fail(CodeTooLarge, "accept too large")
	}
	o, err := parseObject(msg)
	if err != nil {
		return nil, err
	}
	token, err := o.str("token")
	if err != nil {
		return nil, err
	}
	if len(token) == 0 || len(token) > MaxToken {
		return nil, missing("token")
	}
	sub, err := o.str("sub")
	if err != nil {
		return nil, err
	}
	if len(sub) == 0 || len(sub) > keys.MaxSubjectLen {
		return nil, missing("sub")
	}
	groups, err := o.strs("groups", keys.MaxGroups, keys.MaxGroupLen)
	if err != nil {
		return nil, err
	}
	exp, err := o.date("exp")
	if err != nil {
		return nil, err
	}
	maxSize, err := o.date("max_size")
	if err != nil {
		return nil, err
	}
	if maxSize < 1 || maxSize > MaxMessageSizeLimit {
		return nil, missing("max_size")
	}
	if exp+int64(h.c.skew/time.Second) <= now.Unix() {
		return nil, fail(CodeTokenExpired, "accept carries an expired session")
	}
	return &ClientSession{
		SocketID:       h.sid,
		ServerKeyID:    h.serverKey,
		Subject:        sub,
		Groups:         groups,
		ChannelBound:   h.bound,
		Token:          token,
		Expiry:         time.Unix(exp, 0),
		MaxMessageSize: maxSize,
	}, nil
}

// IdentityError details an audience_mismatch found by a client: the
// challenge, validly signed by a pinned key, names another server identity.
// Got is the identity of the signed challenge, so it is not arbitrary peer
// input; it is printed quoted.
type IdentityError struct {
	Want, Got string
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("server identity is %q, expected %q", e.Got, e.Want)
}

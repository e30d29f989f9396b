package vectorfile

import (
	"bytes"
	"errors"
	"time"

	"github.com/wsproof/wsproof/internal/b64u"
)

// SessionPath is the session vector file, relative to the repository root.
const SessionPath = "testdata/session-vectors.json"

// SessionFile is the session vector file of spec section "Session vectors":
// scripts that drive one role's state machine through a socket's life.
type SessionFile struct {
	Spec      string          `json:"spec"`
	License   string          `json:"license"`
	Comment   string          `json:"comment"`
	Generator string          `json:"generator"`
	Server    SessionServer   `json:"server"`
	Client    SessionClient   `json:"client"`
	Keys      Keys            `json:"keys"`
	Vectors   []SessionVector `json:"vectors"`
}

// SessionServer configures the server of server-role session vectors. Times
// are in seconds, sizes in octets.
type SessionServer struct {
	Identity          string   `json:"identity"`
	Algs              []string `json:"algs"`
	RequiredGroups    []string `json:"required_groups"`
	ChallengeLifetime int64    `json:"challenge_lifetime"`
	TokenLifetime     int64    `json:"token_lifetime"`
	RefreshBefore     int64    `json:"refresh_before"`
	HandshakeTimeout  int64    `json:"handshake_timeout"`
	PingInterval      int64    `json:"ping_interval"`
	MaxMessageSize    int64    `json:"max_message_size"`
	MaxQueued         int64    `json:"max_queued"`
}

// SessionClient configures the client of client-role session vectors. Its
// expected server identity is the server's.
type SessionClient struct {
	ClockSkew        int64 `json:"clock_skew"`
	HandshakeTimeout int64 `json:"handshake_timeout"`
	PingInterval     int64 `json:"ping_interval"`
	MaxMessageSize   int64 `json:"max_message_size"`
}

// Roles of a session vector.
const (
	SessionServerRole = "server"
	SessionClientRole = "client"
)

// SessionVector is one script.
type SessionVector struct {
	ID      string `json:"id"`
	Comment string `json:"comment"`
	Role    string `json:"role"`

	// Rows are the rows of the role's state table the script exercises.
	Rows []string `json:"rows"`

	// Config overrides fields of the file's server or client section for
	// this vector; absent fields keep the file's values.
	Config *SessionConfig `json:"config,omitempty"`

	Start SessionStart  `json:"start"`
	Steps []SessionStep `json:"steps"`
}

// SessionConfig holds the per-vector overrides.
type SessionConfig struct {
	TokenLifetime  int64 `json:"token_lifetime,omitempty"`
	PingInterval   int64 `json:"ping_interval,omitempty"`
	MaxMessageSize int64 `json:"max_message_size,omitempty"`
	MaxQueued      int64 `json:"max_queued,omitempty"`
}

// SessionStart is the socket right after the upgrade.
type SessionStart struct {
	At int64 `json:"at"`

	// ChannelBinding is the tls-exporter value (base64url) of the
	// connection, as the role sees it; absent without one.
	ChannelBinding string `json:"channel_binding,omitempty"`

	// Server role: the challenge the server sent first, exactly.
	Challenge string `json:"challenge,omitempty"`

	// Client role: the client's key, whether its connection is TLS, and
	// whether it is configured to accept challenges without channel binding
	// on a TLS connection.
	ClientKID    string `json:"client_kid,omitempty"`
	TLS          bool   `json:"tls,omitempty"`
	AllowUnbound bool   `json:"allow_unbound,omitempty"`
}

// SessionStep is one input at one time and what it must cause.
type SessionStep struct {
	At     int64          `json:"at"`
	Input  SessionInput   `json:"input"`
	Expect []SessionEvent `json:"expect"`
	State  string         `json:"state"`
}

// Input types of a session step.
const (
	InText         = "text"          // a text message: Data exactly, or Size octets of "A"
	InBinary       = "binary"        // a binary message: Data (base64url), or Size zero octets
	InRespond      = "respond"       // server role: KID's correct response to the outstanding challenge
	InPong         = "pong"          // a Ping or Pong frame
	InTimer        = "timer"         // time passes; nothing else happens
	InRegistry     = "registry"      // server role: the registry changes, then the server rechecks
	InSend         = "send"          // the application sends Data (base64url) or Size zero octets
	InWritten      = "written"       // server role: Size octets of application messages were written
	InWriteTimeout = "write_timeout" // a write did not complete within the write deadline
	InClose        = "close"         // the application closes the socket
	InShutdown     = "shutdown"      // server role: the server shuts down
	InPeerClose    = "peer_close"    // a Close frame with Code arrives
	InLost         = "lost"          // the connection ends without a Close frame
)

// SessionInput is the input of a step. Only the fields of its Type are set.
type SessionInput struct {
	Type string `json:"type"`
	Data string `json:"data,omitempty"`
	Size int64  `json:"size,omitempty"`
	KID  string `json:"kid,omitempty"`

	// Registry: Entry (a registry entry, as JSON text) replaces or adds the
	// entry of KID; Remove removes it; Available, when set, makes the
	// registry available or unavailable.
	Entry     string `json:"entry,omitempty"`
	Remove    bool   `json:"remove,omitempty"`
	Available *bool  `json:"available,omitempty"`

	Code int `json:"code,omitempty"` // peer_close
}

// Actions of a session step.
const (
	DoSend     = "send"     // send Message (challenge, accept, response) or a binary message (Data or Size)
	DoPing     = "ping"     // send a Ping frame
	DoDeliver  = "deliver"  // hand Data (base64url) or Size octets to the application
	DoAccepted = "accepted" // the session began or was refreshed
	DoClose    = "close"    // the socket ends
)

// Messages a send action may carry.
const (
	MsgChallenge = "challenge"
	MsgAccept    = "accept"
	MsgResponse  = "response"
	MsgBinary    = "binary"
)

// SessionEvent is one expected action.
type SessionEvent struct {
	Action  string `json:"action"`
	Message string `json:"message,omitempty"`
	Data    string `json:"data,omitempty"`
	Size    int64  `json:"size,omitempty"`

	// Send challenge or accept: its exp.
	Exp int64 `json:"exp,omitempty"`

	// Close: Error is the spec's error code ("" for none), CloseCode the
	// close code of the Close frame sent (0: none is sent), Retry whether
	// a client may reconnect (client role only).
	Error     string `json:"error,omitempty"`
	CloseCode int    `json:"close_code,omitempty"`
	Retry     *bool  `json:"retry,omitempty"`
}

// MarshalSession returns the canonical bytes of f.
func MarshalSession(f *SessionFile) ([]byte, error) { return marshal(f) }

// ParseSession decodes a session vector file strictly: unknown fields are
// errors.
func ParseSession(data []byte) (*SessionFile, error) { return parse[SessionFile](data) }

// LoadSession reads and parses the session vector file at path.
func LoadSession(path string) (*SessionFile, error) { return load(path, ParseSession) }

// ServerFor returns the file's server section with the overrides of v.
func (f *SessionFile) ServerFor(v *SessionVector) SessionServer {
	s := f.Server
	if o := v.Config; o != nil {
		s.TokenLifetime = or(o.TokenLifetime, s.TokenLifetime)
		s.PingInterval = or(o.PingInterval, s.PingInterval)
		s.MaxMessageSize = or(o.MaxMessageSize, s.MaxMessageSize)
		s.MaxQueued = or(o.MaxQueued, s.MaxQueued)
	}
	return s
}

// ClientFor returns the file's client section with the overrides of v.
func (f *SessionFile) ClientFor(v *SessionVector) SessionClient {
	c := f.Client
	if o := v.Config; o != nil {
		c.PingInterval = or(o.PingInterval, c.PingInterval)
		c.MaxMessageSize = or(o.MaxMessageSize, c.MaxMessageSize)
	}
	return c
}

func or(o, v int64) int64 {
	if o != 0 {
		return o
	}
	return v
}

// Seconds is a field in seconds as a time.Duration.
func Seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

// Payload returns the octets of a step's message, of a send, or of an
// expected send or delivery: data as given (a text message) or decoded from
// base64url (binary), or, when size is set, size octets of "A" (text) or of
// zero (binary).
func Payload(text bool, data string, size int64) ([]byte, error) {
	if data != "" && size != 0 {
		return nil, errors.New("vectorfile: both data and size")
	}
	if size != 0 {
		fill := byte(0)
		if text {
			fill = 'A'
		}
		return bytes.Repeat([]byte{fill}, int(size)), nil
	}
	if text {
		return []byte(data), nil
	}
	return b64u.Decode(data)
}

// Remote says what keeps a peer at the other end of a real socket, with no
// hook into the implementation under test, from driving v: "" when every
// input of v is one that such a peer can make (a message, a Pong, a Close
// frame, the connection's end, or a wait for the implementation's own
// timers), else why not, for the first input it cannot make. It is the one
// classification of the scripts by what a remote peer can do: the
// conformance suite reports the rows of the scripts it cannot drive with
// this reason, and our live runners of the scripts, which have those hooks
// (a fake clock, a registry, the application), name it for each script.
func (v *SessionVector) Remote() string {
	for _, st := range v.Steps {
		if why := remoteInput[st.Input.Type]; why != "" {
			return why
		}
	}
	return ""
}

// NotRemote are the ids of the scripts of role that a remote peer cannot
// drive (Remote): those a live runner drives only through its hooks.
func (f *SessionFile) NotRemote(role string) []string {
	var ids []string
	for i := range f.Vectors {
		if v := &f.Vectors[i]; v.Role == role && v.Remote() != "" {
			ids = append(ids, v.ID)
		}
	}
	return ids
}

// remoteInput is why a remote peer cannot make an input, by type; absent
// types it can make.
var remoteInput = map[string]string{
	InRegistry:     "a registry change is not under a remote peer's control",
	InSend:         "what the application sends is the application's behaviour",
	InWritten:      "when the application's writes complete depends on its own sends",
	InWriteTimeout: "a write deadline passes only when the application sends more than the peer reads; a remote peer cannot make it send",
	InClose:        "when the application ends a session is the application's decision",
	InShutdown:     "a shutdown is the operator's decision",
}

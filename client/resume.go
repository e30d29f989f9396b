package client

import (
	"crypto/tls"
	"runtime"
	"sync"
	"weak"
)

// TLS session resumption. A device that loses its network comes back with a
// new TLS connection, and a fleet of them after a flap comes back at once: a
// resumed TLS 1.3 handshake (RFC 8446, section 2.2) spares the server its
// certificate signature and the client its chain verification. Channel
// binding is unaffected: the exporter value is derived from each
// connection's own handshake, resumed or not (spec section "The exporter
// value"), so a session stays bound to the one connection it was made on.

// sessionCacheSize bounds each session cache: tickets of this many servers
// (TLS server names) at most, the least recently used dropped first.
const sessionCacheSize = 32

// defaultTLS is the TLS configuration of a Config whose TLSConfig is nil. Its
// cache is shared by every such Config: they all verify servers against the
// system roots and the URL's host name, and crypto/tls keys a cached session
// by server name, so no session is resumed under a trust it was not made
// under.
var defaultTLS = &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(sessionCacheSize)}

// sessionCaches holds a session cache for each tls.Config that an
// application passed without one, for as long as that tls.Config lives.
// Sessions are not shared between two tls.Config values: on resumption
// crypto/tls checks the cached certificate's host name and expiry, not the
// roots, so a session verified under one Config's roots must not be resumed
// under another's.
var sessionCaches sync.Map // weak.Pointer[tls.Config] -> tls.ClientSessionCache

// resumingTLS returns the TLS configuration that Dial uses for c: c itself
// when it has a ClientSessionCache or turns resumption off
// (SessionTicketsDisabled), the application's choices, else a copy of c with
// the cache that belongs to c.
func resumingTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return defaultTLS
	}
	if c.ClientSessionCache != nil || c.SessionTicketsDisabled {
		return c
	}
	wp := weak.Make(c)
	v, ok := sessionCaches.Load(wp)
	if !ok {
		var loaded bool
		v, loaded = sessionCaches.LoadOrStore(wp, tls.NewLRUClientSessionCache(sessionCacheSize))
		if !loaded {
			runtime.AddCleanup(c, func(wp weak.Pointer[tls.Config]) { sessionCaches.Delete(wp) }, wp)
		}
	}
	r := c.Clone()
	r.ClientSessionCache = v.(tls.ClientSessionCache)
	return r
}

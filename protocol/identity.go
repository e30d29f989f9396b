package protocol

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
)

// IdentityFromURL returns the server identity a client expects by default
// when it dials rawURL (spec section "Server identity"): the ws:// or wss://
// URL with its scheme and host in lowercase, without a port equal to the
// scheme's default (80, 443), without query or fragment, and with the path
// "/" when it has none. A server whose identity is its endpoint's URL in this
// form is found by clients that dial that URL.
//
// A URL with user information or a fragment is refused: credentials never
// travel in a URL (spec section "Opening handshake").
func IdentityFromURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("protocol: the server URL does not parse")
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return "", errors.New("protocol: the server URL must be ws:// or wss://")
	}
	if u.User != nil {
		return "", errors.New("protocol: the server URL must not carry credentials")
	}
	if u.Fragment != "" || strings.Contains(rawURL, "#") {
		return "", errors.New("protocol: the server URL must not have a fragment")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", errors.New("protocol: the server URL has no host")
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(u.Scheme == "ws" && p == "80") && !(u.Scheme == "wss" && p == "443") {
		host += ":" + p
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	id := u.Scheme + "://" + host + path
	if len(id) > MaxIdentity {
		return "", errors.New("protocol: the server URL is longer than a server identity may be")
	}
	return id, nil
}

// PlaintextAllowed reports whether a client may dial rawURL without being
// configured to allow plaintext (spec section "Transport"): wss:// always,
// ws:// only to a loopback host (localhost, 127.0.0.0/8, ::1), where no
// network carries the unencrypted session.
func PlaintextAllowed(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	if u.Scheme == "wss" {
		return true
	}
	host := strings.ToLower(u.Hostname())
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

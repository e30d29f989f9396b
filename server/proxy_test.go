package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestRemoteIPTrustedProxies(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		peer    string
		xff     []string
		want    string
	}{
		{"no proxies trusted", nil, "10.1.1.1:5000", []string{"203.0.113.9"}, "10.1.1.1"},
		{"peer not a proxy", lb, "198.51.100.7:5000", []string{"203.0.113.9"}, "198.51.100.7"},
		{"one hop", lb, "10.1.1.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"client-written prefix ignored", lb, "10.1.1.1:5000", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"two proxies", lb, "10.1.1.1:5000", []string{"203.0.113.9, 10.2.2.2"}, "203.0.113.9"},
		{"several header lines", lb, "10.1.1.1:5000", []string{"1.2.3.4", "203.0.113.9"}, "203.0.113.9"},
		{"no header", lb, "10.1.1.1:5000", nil, "10.1.1.1"},
		{"only proxies", lb, "10.1.1.1:5000", []string{"10.3.3.3"}, "10.3.3.3"},
		{"garbage left of a proxy", lb, "10.1.1.1:5000", []string{"<script>, 10.3.3.3"}, "10.3.3.3"},
		{"ipv6 peer", lb, "[::1]:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"mapped address", lb, "10.1.1.1:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cfg: Config{TrustedProxies: tc.trusted}}
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := s.remoteIP(r); got != tc.want {
				t.Errorf("remoteIP = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzRemoteIP feeds X-Forwarded-For values, which clients can write, to the
// client-address logic behind a trusted proxy: it must never panic, and must
// answer either the peer itself or an address that appears in the header.
func FuzzRemoteIP(f *testing.F) {
	for _, seed := range []string{"203.0.113.9", "1.2.3.4, 203.0.113.9", "203.0.113.9, 10.2.2.2", "<script>, 10.3.3.3",
		"2001:db8::1", "::ffff:203.0.113.9", "", ",,,", "10.0.0.1,10.0.0.2,10.0.0.3", "1.2.3.4%eth0", "[::1]"} {
		f.Add("10.1.1.1:5000", seed)
	}
	f.Add("[::1]:5000", "2001:db8::1, ::1")
	f.Add("198.51.100.7:5000", "203.0.113.9")
	s := &Server{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		r := &http.Request{RemoteAddr: peer, Header: http.Header{"X-Forwarded-For": {xff}}}
		got := s.remoteIP(r)
		host, _, err := net.SplitHostPort(peer)
		if err != nil {
			host = peer
		}
		if got == host {
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("remoteIP = %q: neither the peer %q nor an address", got, peer)
		}
		found := false
		for _, hop := range strings.Split(xff, ",") {
			if h, err := netip.ParseAddr(strings.TrimSpace(hop)); err == nil && h.Unmap() == a {
				found = true
			}
		}
		if !found {
			t.Fatalf("remoteIP = %q, which is not in X-Forwarded-For %q", got, xff)
		}
	})
}

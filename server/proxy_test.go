package server

import (
	"net/http"
	"net/netip"
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

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/keys/postgres"
)

// registrySource is where serve's client keys come from: the registry file
// or, in fleet mode, the database.
type registrySource interface {
	keys.Registry
	// Len is the number of entries held, revoked ones included.
	Len() int
	// watch keeps the registry current until ctx is done and calls changed
	// after every change, including a change of availability.
	watch(ctx context.Context, changed func())
	// health describes what is wrong, in one line, or "" if nothing is;
	// serving is false when no key can be authenticated.
	health() (problem string, serving bool)
	// describe names the source for the startup banner, without secrets.
	describe() string
}

// fileSource is the registry file, reloaded when it changes.
type fileSource struct {
	*keys.FileRegistry
	path         string
	log          *slog.Logger
	reloadErrors prometheus.Counter
}

func newFileSource(reg *keys.FileRegistry, path string, log *slog.Logger, m prometheus.Registerer) *fileSource {
	s := &fileSource{FileRegistry: reg, path: path, log: log}
	s.reloadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wsproof_registry_reload_errors_total",
		Help: "Registry file changes refused because the new file does not load; the last good registry stays in use.",
	})
	m.MustRegister(s.reloadErrors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsproof_registry_keys",
		Help: "Entries in the registry in use, revoked ones included.",
	}, func() float64 { return float64(s.Len()) }))
	return s
}

func (s *fileSource) Len() int { return s.Current().Len() }

func (s *fileSource) watch(ctx context.Context, changed func()) {
	s.Watch(ctx, 0, func(old, new *keys.Set) {
		s.log.Info("wsproof: registry reloaded", "keys", new.Len())
		changed()
	}, func(err error) {
		s.reloadErrors.Inc()
		s.log.Warn("wsproof: registry reload failed; keeping the last good registry", "err", err)
	})
}

func (s *fileSource) health() (string, bool) {
	if err := s.Err(); err != nil {
		return fmt.Sprintf("registry file %s does not load; serving its last good version", s.path), true
	}
	return "", true
}

func (s *fileSource) describe() string { return s.path }

// healthHandler answers /healthz for load balancers: 200 "ok", 200
// "degraded: ..." while the node still authenticates clients from what it
// knows, and 503 "unavailable: ..." when it cannot authenticate anyone, so
// that a balancer sends new clients elsewhere.
func healthHandler(src registrySource, keysProblem func() string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		problem, serving := src.health()
		if kp := keysProblem(); kp != "" {
			if problem != "" {
				problem += "; "
			}
			problem += kp
		}
		switch {
		case !serving:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unavailable: %s\n", problem)
		case problem != "":
			fmt.Fprintf(w, "degraded: %s\n", problem)
		default:
			fmt.Fprintln(w, "ok")
		}
	}
}

// loadServerKeys loads the server key file at path, warning when other
// users can read it; hint says what to do if it does not load.
func (c *cli) loadServerKeys(path, hint string) (*keys.ServerKeys, error) {
	data, err := readSmall(path, maxKeyFile)
	if err != nil {
		return nil, &userError{fmt.Sprintf("cannot read the server key file %s", path), "check the path and its permissions", err}
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		c.say("warning: %s is readable by other users; run: chmod 600 %s", path, path)
	}
	sk, err := keys.ParseServerKeys(data)
	if err != nil {
		return nil, &userError{fmt.Sprintf("cannot load the server keys %s", path), hint, err}
	}
	return sk, nil
}

// parsePrefixes reads CIDR prefixes; a bare address is a one-address prefix.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range list {
		if !strings.Contains(v, "/") {
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// dbSource is the registry in PostgreSQL (fleet mode), followed through
// LISTEN/NOTIFY.
type dbSource struct {
	*postgres.Registry
	what    string // the database, without credentials
	changed atomic.Pointer[func()]
}

func (c *cli) openDBSource(ctx context.Context, url string, grace time.Duration, log *slog.Logger, m prometheus.Registerer) (registrySource, error) {
	s := &dbSource{what: redactURL(url)}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pcfg := &postgres.Config{
		URL: url, Grace: grace, Logger: log, Metrics: m,
		OnChange: func() {
			if f := s.changed.Load(); f != nil {
				(*f)()
			}
		},
	}
	// A short grace period needs a connection check to match: a silent
	// partition must be noticed well before the grace period ends.
	if grace > 0 && grace < 4*(postgres.DefaultPingInterval+postgres.DefaultPingTimeout) {
		pcfg.PingInterval, pcfg.PingTimeout = grace/8, grace/8
	}
	reg, err := postgres.Open(octx, pcfg)
	if err != nil {
		hint := "check --db and that the database is reachable"
		if errors.Is(err, postgres.ErrSchemaVersion) {
			hint = "run \"wsproof db migrate\" with the version of wsproof the nodes run"
		}
		return nil, &userError{fmt.Sprintf("cannot open the registry database %s", s.what), hint, err}
	}
	s.Registry = reg
	return s, nil
}

func (s *dbSource) Len() int { return s.Status().Keys }

func (s *dbSource) watch(ctx context.Context, changed func()) {
	s.changed.Store(&changed)
	s.Run(ctx)
	s.Close()
}

func (s *dbSource) health() (string, bool) {
	st := s.Status()
	if err := s.Check(); err != nil {
		return fmt.Sprintf("registry database unreachable since %s, past the grace period; refusing every key", st.LastContact.UTC().Format(time.RFC3339)), false
	}
	if !st.Connected {
		return fmt.Sprintf("registry database unreachable since %s; serving the %d keys known then", st.LastContact.UTC().Format(time.RFC3339), st.Keys), true
	}
	return "", true
}

func (s *dbSource) describe() string { return s.what }

// redactURL returns a database URL or key=value string without its password,
// for messages and logs.
func redactURL(u string) string {
	if pu, err := neturl.Parse(u); err == nil && pu.Scheme != "" {
		if _, ok := pu.User.Password(); ok {
			pu.User = neturl.UserPassword(pu.User.Username(), "xxxxx")
		}
		q := pu.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			pu.RawQuery = q.Encode()
		}
		return pu.String()
	}
	return regexp.MustCompile(`password\s*=\s*('[^']*'|\S+)`).ReplaceAllString(u, "password=xxxxx")
}

// proxyListener reads the PROXY protocol header (v1 or v2) that a TCP
// balancer at a trusted address puts before each connection, so that the
// server sees the client's address. A trusted peer must send one; any other
// peer must not, so that no client can claim another's address.
func proxyListener(ln net.Listener, trusted []netip.Prefix) net.Listener {
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: 5 * time.Second,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			ap, err := netip.ParseAddrPort(o.Upstream.String())
			if err != nil {
				return proxyproto.REJECT, fmt.Errorf("%w: %v", proxyproto.ErrInvalidUpstream, err)
			}
			for _, p := range trusted {
				if p.Contains(ap.Addr().Unmap()) {
					return proxyproto.REQUIRE, nil
				}
			}
			return proxyproto.REJECT, nil
		},
	}
}

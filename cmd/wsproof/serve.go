package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	jsclient "github.com/wsproof/wsproof/client/js"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
	"github.com/wsproof/wsproof/server"
)

const serveUsage = `Usage: wsproof serve [flags]

Runs a wsproof server: an authenticated echo and broadcast room on /ws, with
Prometheus metrics on /metrics and a health check on /healthz.

The same room is on /ws/browser for web pages, under the spec's browser
profile: it never demands TLS channel binding, which browsers cannot compute,
so keys registered with --cb-required cannot use it. Its identity is the
identity followed by "/browser", and its metrics carry endpoint="browser".
Its Origin allow-list holds the --origin values and the origins of this
server's own pages: http(s)://ADDR (with localhost, 127.0.0.1 and [::1] for a
loopback or unspecified ADDR) and the origin of a ws:// or wss:// --identity.

A demo page at / makes a non-extractable key in the browser, shows the
command that enrolls it, and talks to the room over /ws/browser. It reads the
pinned key set from /server.pub.jwks and the identity from /identity.

On first run it creates the state folder with server.jwks (the server's private
signing and token keys, mode 0600), server.pub.jwks (the public key set clients
pin) and an empty registry.jwks. It never overwrites a file. The registry is
reloaded when it changes (edit it with "wsproof keys"), and live sessions whose
key was revoked or removed are closed within a second.

In fleet mode (--db) the registry is a PostgreSQL database ("wsproof db
migrate" creates it; "wsproof keys ... --db" edits it); the node keeps an
in-memory copy that LISTEN/NOTIFY keeps current, so a change reaches every node
within a second. Without the database it serves the keys it knows for
--db-grace, then refuses everyone (retryably) until the database is back;
/healthz says "degraded" (200) and then "unavailable" (503). Nodes behind one
load balancer share --server-keys and --identity. The deployment guide is
docs/fleet.md in the source repository.

Each message the client sends is echoed back as "echo: <message>". A message
"/all <text>" goes to every live session as "<subject>: <text>", if the
sender's key is in the broadcast group.

Every flag can also be set in the environment, as WSPROOF_ and its name in
capitals with underscores (--handshake-rate is $WSPROOF_HANDSHAKE_RATE; --db is
$WSPROOF_DATABASE_URL), or in a TOML configuration file whose keys are the
flags' names:

    listen = "0.0.0.0:7700"
    identity = "wss://ws.example.com/ws"
    origin = ["https://app.example.com"]
    token-lifetime = "10m"
    handshake-rate = 200

The command line wins over the environment, which wins over the file.

Flags:
    --config FILE             read settings from this TOML file (default $WSPROOF_CONFIG)
    --check-config            check the settings, the key files, the registry and the TLS
                              certificate, print the effective settings and exit, without
                              listening or creating anything
    --state DIR               state folder (default $WSPROOF_STATE, else $HOME/.wsproof)
    --listen ADDR             address to listen on (default 127.0.0.1:7700; port 0 picks one)
    --addr-file FILE          write the address actually bound to FILE once listening
    --identity URL            the server identity clients check (default ws://ADDR/ws, or wss://)
    --registry FILE           key registry (default STATE/registry.jwks)
    --db URL                  fleet mode: read the key registry from PostgreSQL instead
                              (default $WSPROOF_DATABASE_URL unless --registry is given;
                              see "wsproof db")
    --db-grace D              after losing the database, keep serving known keys this
                              long, then refuse everyone until it is back (default 5m0s)
    --server-keys FILE        the server's key file (default STATE/server.jwks); nodes
                              behind one balancer share it; reloaded when it changes
    --trusted-proxy CIDR      a load balancer's address: take the client address from
                              X-Forwarded-For on its requests (repeatable)
    --handshake-rate N        new sockets per second, in total (default 100; burst twice that)
    --handshake-rate-per-addr N   ... and per client address (default 10)
    --max-pending N           sockets upgraded but not yet authenticated, in total (default 1024)
    --max-pending-per-addr N  ... and per client address (default 16)
    --ipv6-prefix N           count IPv6 clients by their first N bits, 1 to 128, for the
                              per-address limits (default 64: one /64 is one client)
    --max-tracked-addrs N     client addresses the per-address limits track at once
                              (default 16384)
    --proxy-protocol          connections from --trusted-proxy addresses must begin with a
                              PROXY protocol (v1 or v2) header naming the client, as a TCP
                              (layer 4) balancer sends it; others must not. With TLS at
                              the node, this keeps channel binding and per-client limits
                              behind a balancer
    --origin ORIGIN           allow browsers from this Origin (repeatable; default none but,
                              on /ws/browser, this server's own pages)
    --required-group GROUP    admit only keys in one of these groups (repeatable; default any key)
    --broadcast-group GROUP   group whose keys may send "/all" (default "broadcast")
    --token-lifetime D        session token lifetime (default 5m0s)
    --challenge-lifetime D    challenge lifetime, 1s to 5m (default 30s)
    --refresh-before D        re-challenge this long before the token expires: more than 0,
                              at most half the token lifetime and at most 5m (default 1m0s,
                              or half the token lifetime if that is less)
    --ping-interval D         ping each authenticated socket this often; a client from which
                              nothing arrives for twice this long is closed with
                              keepalive_timeout (4007) and reconnects (default 30s)
    --max-queued N            octets of messages waiting to be sent to one client; a client
                              that falls further behind is closed with slow_reader (4009) and
                              reconnects (default 1048576)
    --tls-cert FILE           serve TLS 1.3 with this certificate chain (PEM) ...
    --tls-key FILE            ... and this private key (PEM)
    --tls-dev                 serve TLS 1.3 with a self-signed certificate for localhost, created
                              once in the state folder; its SHA-256 pin is printed for
                              "wsproof connect --pin"
    --no-channel-binding      do not demand tls-exporter channel binding (browser profile);
                              keys registered with --cb-required cannot connect
    --diagnostic-reasons      name the spec code in every close reason, as "authentication
                              failed [unknown_key]", for conformance tests ("wsproof probe");
                              it tells anyone whether a key id is registered: never where
                              untrusted clients connect
`

// State folder file names.
const (
	serverKeysFile = "server.jwks"
	serverPubFile  = "server.pub.jwks"
	registryFile   = "registry.jwks"
	devCertFile    = "tls-dev.crt"
	devKeyFile     = "tls-dev.key"
)

// defaultListen is the address serve listens on by default: loopback only,
// so that a first run exposes nothing.
const defaultListen = "127.0.0.1:7700"

func (c *cli) serve(ctx context.Context, args []string) error {
	fs := c.newFlags("serve", serveUsage)
	var (
		stateFlag        = fs.String("state", "", "")
		listen           = fs.String("listen", defaultListen, "")
		addrFile         = fs.String("addr-file", "", "")
		identity         = fs.String("identity", "", "")
		registryPath     = fs.String("registry", "", "")
		dbURL            = fs.String("db", "", "")
		dbGrace          = fs.Duration("db-grace", 0, "")
		serverKeysPath   = fs.String("server-keys", "", "")
		broadcastGroup   = fs.String("broadcast-group", "broadcast", "")
		tokenLifetime    = fs.Duration("token-lifetime", protocol.DefaultTokenLifetime, "")
		challengeLife    = fs.Duration("challenge-lifetime", protocol.DefaultChallengeLifetime, "")
		refreshBefore    = fs.Duration("refresh-before", 0, "")
		pingInterval     = fs.Duration("ping-interval", protocol.DefaultPingInterval, "")
		maxQueued        = fs.Int64("max-queued", 0, "")
		tlsCert          = fs.String("tls-cert", "", "")
		tlsKey           = fs.String("tls-key", "", "")
		tlsDev           = fs.Bool("tls-dev", false, "")
		noChannelBinding = fs.Bool("no-channel-binding", false, "")
		proxyProtocol    = fs.Bool("proxy-protocol", false, "")
		rate             = fs.Float64("handshake-rate", 0, "")
		ratePerAddr      = fs.Float64("handshake-rate-per-addr", 0, "")
		maxPending       = fs.Int("max-pending", 0, "")
		maxPendingPer    = fs.Int("max-pending-per-addr", 0, "")
		ipv6Prefix       = fs.Int("ipv6-prefix", 0, "")
		maxTrackedAddrs  = fs.Int("max-tracked-addrs", 0, "")
		diagnostic       = fs.Bool("diagnostic-reasons", false, "")
		configPath       = fs.String("config", "", "")
		checkConfig      = fs.Bool("check-config", false, "")
		origins          listFlag
		requiredGroups   listFlag
		proxies          listFlag
	)
	fs.Var(&origins, "origin", "")
	fs.Var(&proxies, "trusted-proxy", "")
	fs.Var(&requiredGroups, "required-group", "")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "serve takes no arguments, got %q", pos[0])
	}
	sources, err := c.applyConfig(fs, *configPath)
	if err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return c.usageErr(fs, "--tls-cert and --tls-key go together")
	}
	if *tlsDev && *tlsCert != "" {
		return c.usageErr(fs, "use either --tls-dev or --tls-cert and --tls-key, not both")
	}
	if *tokenLifetime < time.Second {
		return c.usageErr(fs, "--token-lifetime must be at least 1s")
	}
	if *challengeLife < time.Second || *challengeLife > protocol.MaxChallengeLifetime {
		return c.usageErr(fs, "--challenge-lifetime must be between 1s and %v", protocol.MaxChallengeLifetime)
	}
	if set := flagSet(fs, "refresh-before"); set && *refreshBefore <= 0 {
		return c.usageErr(fs, "--refresh-before must be positive")
	} else if set && *refreshBefore > protocol.MaxChallengeLifetime {
		return c.usageErr(fs, "--refresh-before %v is more than %v: lower --refresh-before", *refreshBefore, protocol.MaxChallengeLifetime)
	} else if set && *refreshBefore > *tokenLifetime/2 {
		// The spec refuses such a configuration rather than adjust it: a
		// token lives at least half its lifetime before its refresh.
		return c.usageErr(fs, "--refresh-before %v is more than half the --token-lifetime %v: lower --refresh-before to %v or less, or raise --token-lifetime to %v or more",
			*refreshBefore, *tokenLifetime, *tokenLifetime/2, 2**refreshBefore)
	}
	if *pingInterval <= 0 {
		return c.usageErr(fs, "--ping-interval must be positive")
	}
	if flagSet(fs, "max-queued") && *maxQueued <= 0 {
		return c.usageErr(fs, "--max-queued must be positive")
	}
	if *dbURL != "" && *registryPath != "" {
		return c.usageErr(fs, "use either --registry or --db, not both")
	}
	if *dbURL == "" && *registryPath == "" {
		if *dbURL = c.getenv("WSPROOF_DATABASE_URL"); *dbURL != "" {
			sources["db"] = "$WSPROOF_DATABASE_URL"
		}
	}
	if *dbGrace < 0 || (*dbGrace != 0 && *dbURL == "") {
		return c.usageErr(fs, "--db-grace needs --db and must not be negative")
	}
	trusted, err := parsePrefixes(proxies)
	if err != nil {
		return c.usageErr(fs, "--trusted-proxy: %v", err)
	}
	if *rate < 0 || *ratePerAddr < 0 || *maxPending < 0 || *maxPendingPer < 0 || *maxTrackedAddrs < 0 {
		return c.usageErr(fs, "the handshake limits must not be negative")
	}
	if flagSet(fs, "ipv6-prefix") && (*ipv6Prefix < 1 || *ipv6Prefix > 128) {
		return c.usageErr(fs, "--ipv6-prefix must be between 1 and 128")
	}
	if *proxyProtocol && len(trusted) == 0 {
		return c.usageErr(fs, "--proxy-protocol needs --trusted-proxy: the balancers allowed to name clients")
	}
	if *checkConfig {
		return c.checkServeConfig(fs, sources, serveFiles{state: *stateFlag, serverKeys: *serverKeysPath,
			registry: *registryPath, db: *dbURL, tlsCert: *tlsCert, tlsKey: *tlsKey, tlsDev: *tlsDev, listen: *listen})
	}

	dir, err := c.stateDir(*stateFlag)
	if err != nil {
		return err
	}
	c.say("state folder %s", dir)
	keysPath := *serverKeysPath
	var sk *keys.ServerKeys
	if keysPath == "" {
		keysPath = filepath.Join(dir, serverKeysFile)
		if sk, err = c.initState(dir); err != nil {
			return err
		}
	} else {
		c.sayFile("keys", keysPath, false, "")
		if sk, err = c.loadServerKeys(keysPath, "restore the file from the copy the other nodes use"); err != nil {
			return err
		}
	}

	logger := slog.New(slog.NewTextHandler(c.stderr, nil))
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	var src registrySource
	if *dbURL != "" {
		if src, err = c.openDBSource(ctx, *dbURL, *dbGrace, logger, metrics); err != nil {
			return err
		}
		c.sayFile("registry", src.describe(), false, "")
	} else {
		regPath := *registryPath
		if regPath == "" {
			regPath = filepath.Join(dir, registryFile)
			created, err := writeNew(regPath, []byte("{\"keys\":[]}\n"), 0o644)
			if err != nil {
				return &userError{fmt.Sprintf("cannot create the registry %s", regPath), "check the state folder's permissions", err}
			}
			c.sayFile("registry", regPath, created, "the client keys this server accepts; edit it with \"wsproof keys\"")
		} else {
			c.sayFile("registry", regPath, false, "")
		}
		reg, err := keys.OpenFile(regPath)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return &userError{fmt.Sprintf("registry %s does not exist", regPath),
					fmt.Sprintf("create it with \"wsproof keys add --registry %s ...\"", regPath), nil}
			}
			return &userError{fmt.Sprintf("cannot load the registry %s", regPath), "fix the file, or move it away to start from an empty one", err}
		}
		src = newFileSource(reg, regPath, logger, metrics)
	}

	var tlsConfig *tls.Config
	switch {
	case *tlsDev:
		cert, pin, created, err := devCertificate(dir)
		if err != nil {
			return err
		}
		if err := certCurrent(cert, time.Now()); err != nil {
			return &userError{fmt.Sprintf("the development certificate %s cannot be served", filepath.Join(dir, devCertFile)),
				"remove tls-dev.crt and tls-dev.key from the state folder to have a new one made (clients then need the new --pin)", err}
		}
		c.sayFile("tls cert", filepath.Join(dir, devCertFile), created, "self-signed for localhost and 127.0.0.1")
		c.say("  tls pin   %s (clients: wsproof connect --pin %s)", pin, pin)
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	case *tlsCert != "":
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return &userError{"cannot load the TLS certificate", "check --tls-cert and --tls-key name a matching PEM certificate chain and private key", err}
		}
		if err := certCurrent(cert, time.Now()); err != nil {
			return &userError{fmt.Sprintf("the TLS certificate %s cannot be served", *tlsCert), "renew it", err}
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	if tlsConfig != nil {
		// TLS 1.3 is what gives the tls-exporter channel binding of spec
		// section "TLS channel binding"; 1.2 without extended master secret
		// would not bind the exporter to the session.
		tlsConfig.MinVersion = tls.VersionTLS13
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return &userError{fmt.Sprintf("cannot listen on %s", *listen), "pick another address with --listen, or stop the process using it", err}
	}
	defer ln.Close()
	if *proxyProtocol {
		ln = proxyListener(ln, trusted)
	}
	scheme := "ws"
	if tlsConfig != nil {
		scheme = "wss"
	}
	bound := ln.Addr().String()
	id := *identity
	if id == "" {
		id = scheme + "://" + identityHost(*listen, bound) + "/ws"
	}

	keyReloadErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wsproof_server_keys_reload_errors_total",
		Help: "Server key file changes refused because the new file does not load; the keys in use stay.",
	})
	metrics.MustRegister(keyReloadErrors)
	app := &room{group: *broadcastGroup, log: logger, conns: map[*server.Conn]struct{}{}}
	cfg := server.Config{
		Identity:             id,
		Keys:                 sk,
		Registry:             src,
		TrustedProxies:       trusted,
		HandshakeRate:        *rate,
		HandshakeRatePerAddr: *ratePerAddr,
		MaxPending:           *maxPending,
		MaxPendingPerAddr:    *maxPendingPer,
		IPv6PrefixLen:        *ipv6Prefix,
		MaxTrackedAddrs:      *maxTrackedAddrs,
		DiagnosticReasons:    *diagnostic,
		RequiredGroups:       requiredGroups,
		ChallengeLifetime:    *challengeLife,
		TokenLifetime:        *tokenLifetime,
		RefreshBefore:        *refreshBefore,
		PingInterval:         *pingInterval,
		MaxQueued:            *maxQueued,
		Handler:              app,
		Origins:              slices.Clone(origins),
		NoChannelBinding:     *noChannelBinding,
		Logger:               logger,
		Metrics:              metrics,
	}
	srv, err := server.New(&cfg)
	if err != nil {
		return &userError{"cannot configure the server", "check --identity and the lifetimes", err}
	}
	// The browser endpoint: the same keys, registry and room, under the
	// browser profile. Its own identity keeps a relay from passing a
	// challenge of this unbound endpoint to a client that expects /ws, and
	// its metrics go to their own registry, labeled, because the collector
	// names are the same.
	pageScheme := "http"
	if tlsConfig != nil {
		pageScheme = "https"
	}
	browserMetrics := prometheus.NewRegistry()
	bcfg := cfg
	bcfg.Identity = browserIdentity(id)
	bcfg.Origins = pageOrigins(origins, pageScheme, *listen, bound, id)
	bcfg.NoChannelBinding = true
	bcfg.Logger = logger.With("endpoint", "browser")
	bcfg.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"endpoint": "browser"}, browserMetrics)
	bsrv, err := server.New(&bcfg)
	if err != nil {
		return &userError{"cannot configure the browser endpoint", "check --identity and the lifetimes", err}
	}
	var pubSet atomic.Pointer[[]byte]
	setPub := func(sk *keys.ServerKeys) error {
		p, err := keys.MarshalPublicSet(sk.Public())
		if err == nil {
			pubSet.Store(&p)
		}
		return err
	}
	if err := setPub(sk); err != nil {
		return err
	}
	var keysProblem atomic.Pointer[string]
	keysProblem.Store(new(string))

	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	mux.Handle("/ws/browser", bsrv)
	mountDemo(mux, func() []byte { return *pubSet.Load() }, bcfg.Identity)
	gather := prometheus.Gatherers{metrics, browserMetrics}
	mux.Handle("/metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{Registry: metrics}))
	mux.Handle("/healthz", healthHandler(src, func() string { return *keysProblem.Load() }))
	// WebSocket needs HTTP/1.1: an HTTP/2 connection cannot be upgraded.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    8 << 10,
		TLSConfig:         tlsConfig,
		Protocols:         protocols,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelInfo),
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	wctx, wcancel := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	defer func() { wcancel(); watchers.Wait() }()
	watchers.Go(func() {
		src.watch(wctx, func() {
			if closed := srv.Recheck() + bsrv.Recheck(); closed > 0 {
				logger.Info("wsproof: registry changed", "keys", src.Len(), "sessions_closed", closed)
			}
		})
	})
	watchers.Go(func() {
		watchServerKeys(wctx, keysPath, time.Second, func(sk *keys.ServerKeys) error {
			if err := srv.SetKeys(sk); err != nil {
				return err
			}
			if err := bsrv.SetKeys(sk); err != nil {
				return err
			}
			keysProblem.Store(new(string))
			logger.Info("wsproof: server keys reloaded", "signing", sk.Signing[0].KeyID, "token", sk.Token[0].KeyID,
				"signing_keys", len(sk.Signing), "token_keys", len(sk.Token))
			return setPub(sk)
		}, func(err error) {
			keyReloadErrors.Inc()
			p := fmt.Sprintf("server key file %s does not load; using the keys loaded before", keysPath)
			keysProblem.Store(&p)
			logger.Warn("wsproof: server key reload failed; keeping the keys in use", "err", err)
		})
	})

	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	if *addrFile != "" {
		if err := writeAtomic(*addrFile, []byte(bound+"\n"), 0o644); err != nil {
			return &userError{fmt.Sprintf("cannot write --addr-file %s", *addrFile), "check the folder exists and is writable", err}
		}
	}
	c.say("listening on %s://%s/ws (identity %s)", scheme, bound, id)
	c.say("  browsers  %s://%s/ws/browser (identity %s, no channel binding)", scheme, bound, bcfg.Identity)
	c.say("  demo page %s://%s/", pageScheme, identityHost(*listen, bound))
	logger.Info("wsproof: serving", "addr", bound, "identity", id, "keys", src.Len(), "tls", tlsConfig != nil)

	select {
	case err := <-errc:
		return &userError{"the server stopped", "", err}
	case <-ctx.Done():
	}
	logger.Info("wsproof: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serr := srv.Shutdown(sctx)
	berr := bsrv.Shutdown(sctx)
	herr := hs.Shutdown(sctx)
	if err := errors.Join(serr, berr, herr); err != nil {
		return &userError{"shutdown did not finish cleanly", "", err}
	}
	logger.Info("wsproof: stopped")
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// identityHost is host:port for the default identity: the host given to
// --listen (a name stays a name), "localhost" for an unspecified address,
// and the port actually bound.
func identityHost(listen, bound string) string {
	host, _, _ := net.SplitHostPort(listen)
	_, port, _ := net.SplitHostPort(bound)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// browserIdentity is the server identity of /ws/browser: the identity of
// /ws followed by "/browser", which for the default identity is the URL of
// the browser endpoint, as the spec recommends.
func browserIdentity(id string) string {
	return strings.TrimSuffix(id, "/") + "/browser"
}

// pageOrigins is the Origin allow-list of /ws/browser: the --origin values
// and the origins the demo page has when a browser opens it at the listen
// address (with localhost, 127.0.0.1 and [::1] for a loopback or unspecified
// address) or at the host of a ws:// or wss:// identity.
func pageOrigins(extra []string, scheme, listen, bound, identity string) []string {
	out := slices.Clone(extra)
	add := func(o string) {
		if o = strings.ToLower(o); !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	origin := func(scheme, host, port string) string {
		if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
			port = ""
		}
		if port == "" {
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			return scheme + "://" + host
		}
		return scheme + "://" + net.JoinHostPort(host, port)
	}
	host, _, _ := net.SplitHostPort(listen)
	_, port, _ := net.SplitHostPort(bound)
	ip := net.ParseIP(host)
	if host == "" || host == "localhost" || (ip != nil && (ip.IsUnspecified() || ip.IsLoopback())) {
		for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
			add(origin(scheme, h, port))
		}
		if ip != nil && ip.IsLoopback() {
			add(origin(scheme, ip.String(), port))
		}
	} else {
		add(origin(scheme, host, port))
	}
	if u, err := url.Parse(identity); err == nil && u.Host != "" && u.User == nil {
		switch u.Scheme {
		case "ws":
			add(origin("http", u.Hostname(), u.Port()))
		case "wss":
			add(origin("https", u.Hostname(), u.Port()))
		}
	}
	return out
}

// mountDemo serves the demo page at / with wsproof.js, and the two things
// the page needs to authenticate the server: the pinned public key set at
// /server.pub.jwks and the identity of /ws/browser at /identity. Both are
// public. The page's script comes from this origin, so the page trusts them
// as much as it trusts itself.
func mountDemo(mux *http.ServeMux, pubSet func() []byte, identity string) {
	page, err := fs.Sub(jsclient.Files, "demo")
	if err != nil {
		panic(err) // the embedded tree always has demo/
	}
	files := http.FileServerFS(page)
	// No inline script or style, nothing from elsewhere, no framing. The
	// patterns take every method, as "/ws" does: a "GET /" would conflict
	// with it.
	const csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
		"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	static := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			w.Header().Set("Content-Security-Policy", csp)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Referrer-Policy", "no-referrer")
			w.Header().Set("Cache-Control", "no-cache")
			h.ServeHTTP(w, r)
		})
	}
	mux.Handle("/", static(files))
	mux.Handle("/wsproof.js", static(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, jsclient.Files, "wsproof.js")
	})))
	mux.Handle("/server.pub.jwks", static(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(pubSet())
	})))
	mux.Handle("/identity", static(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, identity)
	})))
}

// say prints one line of the startup banner to stderr.
func (c *cli) say(format string, args ...any) {
	fmt.Fprintf(c.stderr, "wsproof: "+format+"\n", args...)
}

func (c *cli) sayFile(label, path string, created bool, note string) {
	switch {
	case created && note != "":
		c.say("  %-9s %s (created: %s)", label, path, note)
	case created:
		c.say("  %-9s %s (created)", label, path)
	default:
		c.say("  %-9s %s", label, path)
	}
}

// initState creates the server's key files in dir if they do not exist yet,
// and loads them.
func (c *cli) initState(dir string) (*keys.ServerKeys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &userError{fmt.Sprintf("cannot create the state folder %s", dir), "choose another one with --state or $WSPROOF_STATE", err}
	}
	path := filepath.Join(dir, serverKeysFile)
	created := false
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		sk, err := generateServerKeys()
		if err != nil {
			return nil, err
		}
		data, err := keys.MarshalServerKeys(sk)
		if err != nil {
			return nil, err
		}
		if created, err = writeNew(path, data, 0o600); err != nil {
			return nil, &userError{fmt.Sprintf("cannot write %s", path), "check the state folder's permissions", err}
		}
	}
	c.sayFile("keys", path, created, "the server's private keys; keep it secret")
	sk, err := c.loadServerKeys(path, "restore the file, or move it away to create new keys (clients must then pin the new server.pub.jwks)")
	if err != nil {
		return nil, err
	}

	pubPath := filepath.Join(dir, serverPubFile)
	pub, err := keys.MarshalPublicSet(sk.Public())
	if err != nil {
		return nil, err
	}
	if created, err = writeNew(pubPath, pub, 0o644); err != nil {
		return nil, &userError{fmt.Sprintf("cannot write %s", pubPath), "check the state folder's permissions", err}
	}
	c.sayFile("pinned", pubPath, created, "give this file to clients")
	if !created {
		if msg := checkPinned(pubPath, sk); msg != "" {
			c.say("warning: %s", msg)
		}
	}
	return sk, nil
}

// checkPinned reports, in one sentence, why the key set at path would not
// let a client verify this server's challenges, or "" if it would.
func checkPinned(path string, sk *keys.ServerKeys) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("cannot read %s: clients need it to pin this server", path)
	}
	set, err := keys.ParsePublicSet(data)
	if err != nil {
		return fmt.Sprintf("%s does not load (%s); clients cannot pin this server with it", path, oneLine(err.Error()))
	}
	cur := sk.Signing[0]
	p, ok := set.Lookup(cur.KeyID)
	if ok {
		want, _ := keys.Thumbprint(cur.Signer.Public())
		got, _ := keys.Thumbprint(p.Key)
		ok = want == got && p.Algorithm == cur.Algorithm
	}
	if !ok {
		return fmt.Sprintf("%s does not hold the current signing key %s; clients pinning it will refuse this server", path, cur.KeyID)
	}
	return ""
}

// generateServerKeys returns a fresh ES256 signing key and a dir token key,
// each with a random key id.
func generateServerKeys() (*keys.ServerKeys, error) {
	signer, err := keys.Generate(keys.ES256, nil)
	if err != nil {
		return nil, err
	}
	secret, err := randomBytes(keys.TokenKeySize)
	if err != nil {
		return nil, err
	}
	sigID, err := randomID("sig-")
	if err != nil {
		return nil, err
	}
	tokID, err := randomID("tok-")
	if err != nil {
		return nil, err
	}
	return &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: sigID, Algorithm: keys.ES256, Signer: signer}},
		Token:   []keys.TokenKey{{KeyID: tokID, Algorithm: keys.TokenDir, Secret: secret}},
	}, nil
}

// room is the default application: an authenticated echo and broadcast
// room. Messages are binary frames holding UTF-8 text.
type room struct {
	group string
	log   *slog.Logger

	mu    sync.Mutex
	conns map[*server.Conn]struct{}
}

func (r *room) ServeSession(ctx context.Context, c *server.Conn) {
	s := c.Session()
	r.log.Info("wsproof: session opened", "sub", s.Subject, "kid", s.KeyID, "sid", s.SocketID,
		"channel_bound", s.ChannelBound, "remote", c.RemoteIP())
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
	for {
		m, err := c.Read(ctx)
		if err != nil {
			return
		}
		text := strings.ToValidUTF8(string(m.Data), string(utf8.RuneError))
		rest, all := strings.CutPrefix(text, "/all ")
		var reply string
		switch {
		case !all:
			reply = "echo: " + text
		case !slices.Contains(m.Session.Groups, r.group):
			reply = "denied: broadcast needs group " + r.group
		default:
			r.broadcast(ctx, []byte(m.Session.Subject+": "+rest))
			continue
		}
		if err := c.Send(ctx, []byte(reply)); err != nil {
			return
		}
	}
}

// broadcast sends msg to every live session. Send queues without waiting,
// so a session that stopped reading costs the others nothing: once its
// queue is full the server closes it with slow_reader, and its handler
// leaves the room.
func (r *room) broadcast(ctx context.Context, msg []byte) {
	r.mu.Lock()
	conns := make([]*server.Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		c.Send(ctx, msg)
	}
}

package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/server"
)

// childEnv marks a process started as the server child. The test binary
// checks it in TestMain, so that the same mechanism works under go test.
const childEnv = "WSPROOF_BENCH_CHILD"

// childConfig is what the load generator hands the server child, in a file.
type childConfig struct {
	Identity      string          `json:"identity"`
	ServerKeys    json.RawMessage `json:"server_keys"` // keys.MarshalServerKeys
	Registry      json.RawMessage `json:"registry"`    // keys.MarshalRegistry
	CertPEM       []byte          `json:"cert_pem"`
	KeyPEM        []byte          `json:"key_pem"`
	TokenLifetime time.Duration   `json:"token_lifetime"`
	RefreshBefore time.Duration   `json:"refresh_before"`
	MaxLife       time.Duration   `json:"max_life"`
	// Limits, when set, replaces the raised pre-authentication limits of
	// the throughput runs: the denial-of-service runs measure the server's
	// own defence, so a zero field keeps the server package's default.
	Limits *childLimits `json:"limits,omitempty"`
	// App selects the application behind /ws (apps.go): "" the echo of
	// the throughput runs, "revoke" or "room".
	App string `json:"app,omitempty"`
	// RegistryFile, when set, is the registry the child serves from: a
	// keys.FileRegistry watched as wsproof serve watches it (Watch at its
	// default interval, Recheck on every change). Registry is then unused.
	RegistryFile string `json:"registry_file,omitempty"`
	// WriteTimeout is server.Config.WriteTimeout; zero keeps the default.
	WriteTimeout time.Duration `json:"write_timeout,omitempty"`
	// Push is what the revoke application sends to every session.
	Push pushConfig `json:"push"`
	// SndBuf, when positive, is set as SO_SNDBUF on every connection the
	// plain listener accepts (which turns the kernel's autotuning off), so
	// that writes to a peer that does not read block after little data.
	SndBuf int `json:"sndbuf,omitempty"`
}

// childLimits are server.Config's pre-authentication limits; zero fields
// select the server package's defaults.
type childLimits struct {
	MaxPending           int           `json:"max_pending,omitempty"`
	MaxPendingPerAddr    int           `json:"max_pending_per_addr,omitempty"`
	HandshakeRate        float64       `json:"handshake_rate,omitempty"`
	HandshakeRatePerAddr float64       `json:"handshake_rate_per_addr,omitempty"`
	HandshakeTimeout     time.Duration `json:"handshake_timeout,omitempty"`
}

// childReady is the one line the child prints once it listens.
type childReady struct {
	WS  string `json:"ws"`  // host:port of the plain listener: /ws is wsproof, /plain is gorilla
	WSS string `json:"wss"` // the same handlers behind TLS 1.3
	Ctl string `json:"ctl"` // control: /rusage, /gc, /stats, /app, /debug/pprof/
	PID int    `json:"pid"`
}

// serverChild runs the server side of every measurement: wsproof's
// server.Server on /ws and a plain gorilla echo on /plain, on the same
// http.Server (ReadHeaderTimeout and MaxHeaderBytes as the server package
// recommends), once over plain TCP and once over TLS 1.3. The application
// behind /ws is the echo, or the revocation or broadcast-room application of
// those runs (apps.go), which the control server's /app reports on. It exits
// when its standard input closes or after MaxLife.
func serverChild(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "child configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*cfgPath)
	if err != nil {
		return err
	}
	var cfg childConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return err
	}
	sk, err := keys.ParseServerKeys(cfg.ServerKeys)
	if err != nil {
		return err
	}
	var reg keys.Registry
	var file *keys.FileRegistry
	if cfg.RegistryFile != "" {
		if file, err = keys.OpenFile(cfg.RegistryFile); err != nil {
			return err
		}
		reg = file
	} else if reg, err = keys.ParseRegistry(cfg.Registry); err != nil {
		return err
	}
	app, err := newApp(cfg)
	if err != nil {
		return err
	}
	metrics := prometheus.NewRegistry()
	scfg := &server.Config{
		Identity:      cfg.Identity,
		Keys:          sk,
		Registry:      reg,
		TokenLifetime: cfg.TokenLifetime,
		RefreshBefore: cfg.RefreshBefore,
		WriteTimeout:  cfg.WriteTimeout,
		Handler:       app.handler,
		// The load comes from a handful of loopback addresses at rates far
		// above the per-address defaults, which exist to stop floods.
		MaxPending:           1 << 20,
		MaxPendingPerAddr:    1 << 20,
		HandshakeRate:        1e9,
		HandshakeRatePerAddr: 1e9,
		Logger:               slog.New(slog.DiscardHandler),
		Metrics:              metrics,
	}
	if l := cfg.Limits; l != nil {
		scfg.MaxPending, scfg.MaxPendingPerAddr = l.MaxPending, l.MaxPendingPerAddr
		scfg.HandshakeRate, scfg.HandshakeRatePerAddr = l.HandshakeRate, l.HandshakeRatePerAddr
		scfg.HandshakeTimeout = l.HandshakeTimeout
	}
	srv, err := server.New(scfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	// The denial-of-service runs count the upgrades the server admits
	// (dos_admit.go); the others leave the handler as it is.
	adm := &admissions{start: time.Now()}
	if cfg.Limits != nil {
		mux.Handle("/ws", adm.wrap(srv))
	} else {
		mux.Handle("/ws", srv)
	}
	mux.HandleFunc("/plain", plainEcho)

	ln, err := loopbackListen("127.0.0.1:0")
	if err != nil {
		return err
	}
	if cfg.SndBuf > 0 {
		ln = sndbufListener{ln, cfg.SndBuf}
	}
	if app.conns != nil {
		ln = app.conns.wrap(ln)
	}
	if file != nil {
		// As wsproof serve does: every registry change Watch reports
		// rechecks the live sessions, on Watch's goroutine.
		go file.Watch(context.Background(), 0, func(_, _ *keys.Set) {
			seen := time.Now()
			closed := srv.Recheck()
			app.changed(seen, time.Now(), closed)
		}, nil)
	}
	tln, err := loopbackListen("127.0.0.1:0")
	if err != nil {
		return err
	}
	cln, err := loopbackListen("127.0.0.1:0")
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(cfg.CertPEM, cfg.KeyPEM)
	if err != nil {
		return err
	}
	newHTTP := func() *http.Server {
		return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10}
	}
	hs, hts := newHTTP(), newHTTP()
	// HTTP/1.1 only: a WebSocket upgrade needs it, and Go's default key
	// exchange (X25519MLKEM768) is kept, as users get it.
	hts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}}
	go hs.Serve(ln)
	go hts.ServeTLS(tln, "", "")
	ctl := controlMux(metrics, srv)
	adm.handle(ctl)
	ctl.HandleFunc("/app", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(app.report())
	})
	go (&http.Server{Handler: ctl, ReadHeaderTimeout: 5 * time.Second}).Serve(cln)

	ready, _ := json.Marshal(childReady{WS: ln.Addr().String(), WSS: tln.Addr().String(), Ctl: cln.Addr().String(), PID: os.Getpid()})
	fmt.Println(string(ready))

	maxLife := cfg.MaxLife
	if maxLife <= 0 {
		maxLife = time.Hour
	}
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(maxLife):
	}
	return nil
}

// echoSession is the authenticated application: it echoes every message.
func echoSession(ctx context.Context, c *server.Conn) {
	for {
		m, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Send(ctx, m.Data); err != nil {
			return
		}
	}
}

// plainUpgrader is a stock gorilla upgrader, as in gorilla's own echo
// example; the client sends no Origin header.
var plainUpgrader = websocket.Upgrader{}

// plainEcho is the unauthenticated baseline: a stock gorilla echo loop.
func plainEcho(w http.ResponseWriter, r *http.Request) {
	ws, err := plainUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	for {
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if err := ws.WriteMessage(mt, msg); err != nil {
			return
		}
	}
}

// loopbackListen refuses any address outside 127.0.0.0/8.
func loopbackListen(addr string) (net.Listener, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	return net.Listen("tcp", addr)
}

// checkLoopback fails unless addr is an IPv4 host:port in 127.0.0.0/8: the
// benchmark neither listens on nor sends to anything else.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing %q: not in 127.0.0.0/8", addr)
	}
	return nil
}

// controlMux exposes the child's own accounting: getrusage, a forced GC,
// runtime and server metrics, and pprof.
func controlMux(metrics *prometheus.Registry, srv *server.Server) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/rusage", func(w http.ResponseWriter, r *http.Request) {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		json.NewEncoder(w).Encode(map[string]int64{
			"utime_us":  ru.Utime.Sec*1e6 + ru.Utime.Usec,
			"stime_us":  ru.Stime.Sec*1e6 + ru.Stime.Usec,
			"maxrss_kb": ru.Maxrss,
			"cpu_ns":    int64(cpuClock(clockProcessCPU)),
		})
	})
	mux.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		out := map[string]float64{
			"goroutines":  float64(runtime.NumGoroutine()),
			"heap_inuse":  float64(ms.HeapInuse),
			"stack_inuse": float64(ms.StackInuse),
			"sessions":    float64(srv.Sessions()),
		}
		mfs, err := metrics.Gather()
		if err == nil {
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					var name strings.Builder
					name.WriteString(mf.GetName())
					for _, l := range m.GetLabel() {
						fmt.Fprintf(&name, ",%s=%s", l.GetName(), l.GetValue())
					}
					switch {
					case m.GetCounter() != nil:
						out[name.String()] = m.GetCounter().GetValue()
					case m.GetGauge() != nil:
						out[name.String()] = m.GetGauge().GetValue()
					}
				}
			}
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return mux
}

// Command centrifuge-bench is the Centrifuge side of wsproof-bench's handshake
// comparison: a minimal github.com/centrifugal/centrifuge server whose
// OnConnecting handler authenticates each connection with a JWT the way
// Centrifugo does (HS256 with a shared secret, or ES256 with a public key;
// "sub" becomes the user, "exp" the connection expiry), and which echoes RPC
// calls. An empty token connects anonymously: the unauthenticated baseline.
//
// It lives in its own Go module so that wsproof's go.mod does not depend on
// Centrifuge. wsproof-bench builds it, starts it as a child process and
// drives it over loopback; it is not meant to be run by hand:
//
//	centrifuge-bench -hs256-secret HEX -es256-pub FILE
//
// It listens on loopback addresses only, prints one JSON line with its
// addresses when ready, and exits when its standard input closes (the parent
// went away) or after -max-life.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
	"unsafe"

	"github.com/centrifugal/centrifuge"
	"github.com/golang-jwt/jwt/v5"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "WebSocket listen address (loopback only)")
	ctlAddr := flag.String("ctl", "127.0.0.1:0", "control listen address (loopback only)")
	secretHex := flag.String("hs256-secret", "", "HS256 secret, hex")
	pubFile := flag.String("es256-pub", "", "ES256 public key, PEM (PKIX)")
	maxLife := flag.Duration("max-life", 2*time.Hour, "exit after this long")
	flag.Parse()
	if err := run(*listen, *ctlAddr, *secretHex, *pubFile, *maxLife); err != nil {
		log.Fatalf("centrifuge-bench: %v", err)
	}
}

type claims struct {
	jwt.RegisteredClaims
}

func run(listen, ctlAddr, secretHex, pubFile string, maxLife time.Duration) error {
	secret, err := hex.DecodeString(secretHex)
	if err != nil || len(secret) < 32 {
		return errors.New("need -hs256-secret of at least 32 bytes, hex")
	}
	pemBytes, err := os.ReadFile(pubFile)
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return errors.New("-es256-pub is not PEM")
	}
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return err
	}
	ecPub, ok := pk.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("-es256-pub is not an ECDSA key")
	}

	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		return err
	}
	// The parser is built once, as Centrifugo builds its verifier once; the
	// algorithm comes from the header but must be one the key supports.
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"HS256", "ES256"}), jwt.WithExpirationRequired())
	keyFunc := func(t *jwt.Token) (any, error) {
		switch t.Method.Alg() {
		case "HS256":
			return secret, nil
		case "ES256":
			return ecPub, nil
		}
		return nil, errors.New("unexpected algorithm")
	}
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		if e.Token == "" {
			return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{}}, nil
		}
		var c claims
		if _, err := parser.ParseWithClaims(e.Token, &c, keyFunc); err != nil {
			return centrifuge.ConnectReply{}, centrifuge.DisconnectInvalidToken
		}
		if c.Subject == "" {
			return centrifuge.ConnectReply{}, centrifuge.DisconnectInvalidToken
		}
		return centrifuge.ConnectReply{
			Credentials:       &centrifuge.Credentials{UserID: c.Subject, ExpireAt: c.ExpiresAt.Unix()},
			ClientSideRefresh: true,
		}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnRPC(func(e centrifuge.RPCEvent, cb centrifuge.RPCCallback) {
			cb(centrifuge.RPCReply{Data: e.Data}, nil)
		})
	})
	if err := node.Run(); err != nil {
		return err
	}

	ln, err := loopbackListen(listen)
	if err != nil {
		return err
	}
	ctl, err := loopbackListen(ctlAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10}
	go srv.Serve(ln)
	go (&http.Server{Handler: controlMux(), ReadHeaderTimeout: 5 * time.Second}).Serve(ctl)

	ready, _ := json.Marshal(map[string]any{"ws": ln.Addr().String(), "ctl": ctl.Addr().String(), "pid": os.Getpid()})
	fmt.Println(string(ready))

	// Exit when the parent goes away (stdin closes) or after maxLife.
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(maxLife):
	}
	return nil
}

// loopbackListen refuses any address outside 127.0.0.0/8: the benchmark
// never exposes anything.
func loopbackListen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil, fmt.Errorf("refusing to listen on %q: not in 127.0.0.0/8", addr)
	}
	return net.Listen("tcp", addr)
}

// processCPU is the process's CPU time in nanoseconds from
// clock_gettime(CLOCK_PROCESS_CPUTIME_ID), which reads the scheduler's exact
// runtime rather than getrusage's tick samples.
func processCPU() int64 {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 2, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return ts.Nano()
}

// controlMux is the same control surface as wsproof-bench's server child:
// the process's own CPU accounting, a forced GC, a few runtime figures and
// pprof.
func controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/rusage", func(w http.ResponseWriter, r *http.Request) {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		json.NewEncoder(w).Encode(map[string]int64{
			"utime_us":  ru.Utime.Sec*1e6 + ru.Utime.Usec,
			"stime_us":  ru.Stime.Sec*1e6 + ru.Stime.Usec,
			"maxrss_kb": ru.Maxrss,
			"cpu_ns":    processCPU(),
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
		json.NewEncoder(w).Encode(map[string]any{
			"goroutines": runtime.NumGoroutine(), "heap_inuse": ms.HeapInuse, "stack_inuse": ms.StackInuse,
		})
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return mux
}

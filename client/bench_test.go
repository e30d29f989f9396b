//go:build unix

package client

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
)

// BenchmarkClientEcho measures the client's per-message cost: 64-byte echo
// on 64 sockets through a Conn against the same through a bare gorilla
// client, in alternating rounds of one run. Both servers are gorilla echo
// loops (the test server adds an atomic counter), so the difference is the
// client's: its reader and writer goroutines, the copy Write makes, the
// queues. Run it with
//
//	go test ./client -run '^$' -bench ClientEcho -benchtime 200000x -count 3
//
// and read conn/plain (rates) and the CPU per message of each.
func BenchmarkClientEcho(b *testing.B) {
	const conns, size = 64, 64
	f := newFixture(b, keys.EdDSA)
	ts := newServer(b, f, serverOptions{})
	stop := make(chan struct{})
	var drained sync.WaitGroup
	drained.Go(func() { // the test server hands each authenticated socket to a test
		for {
			select {
			case <-ts.accepted:
			case <-stop:
				return
			}
		}
	})
	b.Cleanup(func() { close(stop); drained.Wait() })
	plainURL := plainEchoServer(b)
	for _, inflight := range []int{1, 16} {
		b.Run(fmt.Sprintf("%dB/conns=%d/inflight=%d", size, conns, inflight), func(b *testing.B) {
			ctx := context.Background()
			var plain []*websocket.Conn
			var auth []*Conn
			for range conns {
				ws, _, err := websocket.DefaultDialer.Dial(plainURL, nil)
				if err != nil {
					b.Fatal(err)
				}
				plain = append(plain, ws)
				c, err := Dial(ctx, ts.url, f.config())
				if err != nil {
					b.Fatal(err)
				}
				auth = append(auth, c)
			}
			msg := bytes.Repeat([]byte{0xa5}, size)
			const rounds = 16
			var pd, ad, pcpu, acpu time.Duration
			b.ResetTimer()
			for r := range rounds {
				n := b.N / rounds
				if r < b.N%rounds {
					n++
				}
				wall, cpu := echoRound(b, len(plain), n, inflight,
					func(i int) error { return plain[i].WriteMessage(websocket.BinaryMessage, msg) },
					func(i int) (int, error) { _, m, err := plain[i].ReadMessage(); return len(m), err })
				pd, pcpu = pd+wall, pcpu+cpu
				wall, cpu = echoRound(b, len(auth), n, inflight,
					func(i int) error { return auth[i].Write(ctx, msg) },
					func(i int) (int, error) { m, err := auth[i].Read(ctx); return len(m), err })
				ad, acpu = ad+wall, acpu+cpu
			}
			b.StopTimer()
			prate, arate := float64(b.N)/pd.Seconds(), float64(b.N)/ad.Seconds()
			b.ReportMetric(prate, "plain-msgs/s")
			b.ReportMetric(arate, "conn-msgs/s")
			b.ReportMetric(arate/prate, "conn/plain")
			b.ReportMetric(float64(pcpu.Microseconds())/float64(b.N), "plain-cpu-µs/msg")
			b.ReportMetric(float64(acpu.Microseconds())/float64(b.N), "conn-cpu-µs/msg")
			for i := range conns {
				plain[i].Close()
				auth[i].Close()
			}
		})
	}
}

// echoRound sends n messages spread over the sockets, at most inflight
// unanswered on each, and returns the wall time and the process's CPU time.
func echoRound(b *testing.B, sockets, n, inflight int, write func(int) error, read func(int) (int, error)) (wall, cpu time.Duration) {
	start, startCPU := time.Now(), processCPU(b)
	var wg sync.WaitGroup
	for i := range sockets {
		count := n / sockets
		if i < n%sockets {
			count++
		}
		if count == 0 {
			continue
		}
		window := make(chan struct{}, inflight)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range count {
				window <- struct{}{}
				if err := write(i); err != nil {
					b.Errorf("write: %v", err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range count {
				if got, err := read(i); err != nil || got != 64 {
					b.Errorf("echo: %d bytes, %v", got, err)
					return
				}
				<-window
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return time.Since(start), processCPU(b) - startCPU
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// plainEchoServer is gorilla's echo example on loopback.
func plainEchoServer(b *testing.B) string {
	var up websocket.Upgrader
	var wg sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
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
	}))
	b.Cleanup(func() { hs.Close(); wg.Wait() })
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

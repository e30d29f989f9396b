//go:build unix

// Package echobench is what the echo benchmarks of packages server and
// client share: a stock gorilla echo server for the baseline, the round
// that drives sockets, and the process's CPU clock. Each benchmark measures
// its side against the baseline in alternating rounds of one run, so the
// ratio, not the rate, is the figure to compare on a noisy machine.
package echobench

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// PlainServer starts gorilla's echo example on loopback until the benchmark
// ends and returns its ws:// URL.
func PlainServer(tb testing.TB) string {
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
	tb.Cleanup(func() { hs.Close(); wg.Wait() })
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// Round sends n messages of size bytes spread over sockets sockets, at most
// inflight unanswered on each: write(i) sends one on socket i, read(i)
// receives one and returns its length. It returns the time until the last
// echo arrived and the CPU time the process used meanwhile, and stops the
// benchmark on the first error or wrong-sized echo.
func Round(b *testing.B, sockets, n, inflight, size int, write func(i int) error, read func(i int) (int, error)) (wall, cpu time.Duration) {
	start, startCPU := time.Now(), ProcessCPU(b)
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
				if got, err := read(i); err != nil || got != size {
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
	return time.Since(start), ProcessCPU(b) - startCPU
}

// ProcessCPU is the user and system time this process has used.
func ProcessCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

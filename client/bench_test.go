//go:build unix

package client

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/internal/echobench"
	"github.com/wsproof/wsproof/keys"
)

// BenchmarkClientEcho measures the client's per-message cost: 64-byte echo
// on 64 sockets through a Conn against the same through a bare gorilla
// client, in alternating rounds of one run. Both servers are gorilla echo
// loops (the test server adds an atomic counter, a mutex and a write
// deadline, which it keeps for a while), so the difference is the client's: its reader and writer goroutines, the copy Write makes, the
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
	plainURL := echobench.PlainServer(b)
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
				wall, cpu := echobench.Round(b, len(plain), n, inflight, size,
					func(i int) error { return plain[i].WriteMessage(websocket.BinaryMessage, msg) },
					func(i int) (int, error) { _, m, err := plain[i].ReadMessage(); return len(m), err })
				pd, pcpu = pd+wall, pcpu+cpu
				wall, cpu = echobench.Round(b, len(auth), n, inflight, size,
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

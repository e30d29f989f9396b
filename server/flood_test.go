package server

import (
	"crypto/rand"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// activeCount is what Shutdown waits for: sockets whose reader has not
// ended, and closers.
func (s *Server) activeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

const mib = 1 << 20

// TestFloodMemoryReturns opens 2,000 sockets at once, half of them
// authenticated and half left in the handshake, closes them all, and checks
// that the heap in use comes back near where it was before the flood
// without anyone forcing a collection: a server left idle after a flood used
// to keep the dead sockets' memory in use (and in RSS) until the runtime's
// two-minute forced collection, the heap goal still sized for the flood.
// Then, after a forced collection, that nothing is retained per socket.
func TestFloodMemoryReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 sockets")
	}
	f := newFixture(t, false, func(c *Config) {
		c.HandshakeRate, c.HandshakeRatePerAddr = 1e6, 1e6
		c.MaxPending, c.MaxPendingPerAddr = 1e4, 1e4
	})
	kid := "c-" + string(keys.EdDSA)
	pc, err := protocol.NewClient(&protocol.ClientConfig{KeyID: kid, Signer: f.signers[kid], Algorithm: keys.EdDSA,
		ServerKeys: f.sk.Public(), ServerIdentity: identity})
	if err != nil {
		t.Fatal(err)
	}
	// flood opens n sockets, 64 at a time, holds them all open at once,
	// then closes them and waits until the server has ended every one.
	flood := func(n int) {
		socks := make([]*websocket.Conn, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i := range socks {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 10 * time.Second}
				ws, _, err := d.Dial(f.url, nil)
				if err != nil {
					t.Error(err)
					return
				}
				socks[i] = ws
				ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, challenge, err := ws.ReadMessage()
				if err != nil || i%2 == 1 {
					return // left in the handshake
				}
				h := pc.Handshake()
				resp, err := h.ReadChallenge(challenge, rand.Reader, time.Now(), nil)
				if err != nil {
					t.Error(err)
					return
				}
				ws.WriteMessage(websocket.TextMessage, resp)
				if _, _, err := ws.ReadMessage(); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if n > 100 {
			t.Logf("%d sockets open: heap in use %.1f MiB, %d goroutines", n, float64(heapInuse())/mib, runtime.NumGoroutine())
		}
		for i, ws := range socks {
			ws.Close()
			socks[i] = nil
		}
		deadline := time.Now().Add(20 * time.Second)
		for f.srv.activeCount() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d sockets still active 20 s after the clients closed them", f.srv.activeCount())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	flood(64) // warm the code paths, the pools and the runtime's caches
	runtime.GC()
	runtime.GC()
	base := heapInuse()

	const n = 2000
	flood(n)
	closed := time.Now()
	// The heap goes back near the baseline: within 8 MiB, against some 60
	// MiB of sockets (both ends) at the height of the flood.
	const bound = 8 * mib
	var inuse uint64
	for {
		inuse = heapInuse()
		if inuse <= base+bound || time.Since(closed) > 10*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("heap in use: %.1f MiB before the flood, %.1f MiB %v after its last socket ended",
		float64(base)/mib, float64(inuse)/mib, time.Since(closed).Round(time.Millisecond))
	if inuse > base+bound {
		t.Errorf("heap in use still %.1f MiB 10 s after the flood, %.1f MiB before it (bound +%d MiB)",
			float64(inuse)/mib, float64(base)/mib, bound/mib)
	}

	// What the server keeps of n ended sockets once they are collected: the
	// runtime's goroutine descriptors and poll descriptors, which it never
	// frees, and nothing of ours.
	runtime.GC()
	runtime.GC()
	after := heapInuse()
	t.Logf("after a forced collection: %.1f MiB, %.0f bytes per socket", float64(after)/mib,
		float64(int64(after)-int64(base))/n)
	if after > base+4*mib {
		t.Errorf("heap in use %.1f MiB after a forced collection, %.1f MiB before the flood: more than 2 KiB per socket retained",
			float64(after)/mib, float64(base)/mib)
	}
}

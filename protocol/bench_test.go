package protocol

import (
	"crypto/ecdsa"
	"crypto/rand"
	"runtime"
	"testing"
	"time"

	"github.com/wsproof/wsproof/internal/benchfloor"
	"github.com/wsproof/wsproof/keys"
)

// The handshake benchmarks measure our code and, in the same loop, the raw
// primitives one handshake cannot avoid, so the ratio is read off one run on
// a noisy machine:
//
//	go test ./protocol -run '^$' -bench Handshake -benchtime 2000x
//
// server: sign the challenge, verify the response, sign the token, seal it;
// its floor is internal/benchfloor's Server (ECDSA P-256 sign +
// client-algorithm verify + P-256 sign + AES-256-GCM seal), the same floor
// internal/bench measures beside the server process. client: verify the
// challenge, sign the response; its floor is Client (P-256 verify +
// client-algorithm sign). The metrics are ns/op of each and "rate-ratio" =
// floor time / our time (1.0 means no overhead; the target for ES256 is >=
// 0.85). "server-allocs/op" and "server-B/op" are the heap allocations of
// the server's half alone, counted in a separate untimed pass (-benchmem's
// figures add the client's and the floor's).

func BenchmarkHandshake(b *testing.B) {
	w := newWorld(b, nil)
	for _, alg := range keys.Algorithms {
		b.Run(string(alg), func(b *testing.B) {
			fl, err := benchfloor.New(alg, testKey(b, keys.ES256).(*ecdsa.PrivateKey), testKey(b, alg))
			if err != nil {
				b.Fatal(err)
			}
			allocs, bytes := serverAllocs(b, w, alg)
			var server, client, floorS, floorC time.Duration
			for b.Loop() {
				t0 := time.Now()
				sh, challenge, err := w.srv.Start(rand.Reader, testNow, nil)
				t1 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				resp, err := w.clients[alg].Handshake().ReadChallenge(challenge, rand.Reader, testNow, nil)
				t2 := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := sh.ReadResponse(resp, rand.Reader, testNow); err != nil {
					b.Fatal(err)
				}
				t3 := time.Now()
				if err := fl.Server(); err != nil {
					b.Fatal(err)
				}
				t4 := time.Now()
				if err := fl.Client(); err != nil {
					b.Fatal(err)
				}
				t5 := time.Now()
				server += t1.Sub(t0) + t3.Sub(t2)
				client += t2.Sub(t1)
				floorS += t4.Sub(t3)
				floorC += t5.Sub(t4)
			}
			n := float64(b.N)
			b.ReportMetric(0, "ns/op") // the loop runs four measurements; report them apart
			b.ReportMetric(float64(server.Nanoseconds())/n, "server-ns/op")
			b.ReportMetric(float64(floorS.Nanoseconds())/n, "server-floor-ns/op")
			b.ReportMetric(float64(floorS)/float64(server), "server-rate-ratio")
			b.ReportMetric(allocs, "server-allocs/op")
			b.ReportMetric(bytes, "server-B/op")
			b.ReportMetric(float64(client.Nanoseconds())/n, "client-ns/op")
			b.ReportMetric(float64(floorC.Nanoseconds())/n, "client-floor-ns/op")
			b.ReportMetric(float64(floorC)/float64(client), "client-rate-ratio")
		})
	}
}

// serverAllocs returns the heap allocations and bytes of the server's half of
// one handshake with a client of alg, averaged over a few handshakes with
// runtime.ReadMemStats around the server's calls only.
func serverAllocs(b *testing.B, w *world, alg keys.Algorithm) (allocs, bytes float64) {
	const n = 100
	var m0, m1 runtime.MemStats
	var objects, size uint64
	count := func(f func() error) {
		runtime.ReadMemStats(&m0)
		err := f()
		runtime.ReadMemStats(&m1)
		if err != nil {
			b.Fatal(err)
		}
		objects += m1.Mallocs - m0.Mallocs
		size += m1.TotalAlloc - m0.TotalAlloc
	}
	for range n {
		var sh *ServerHandshake
		var challenge, resp []byte
		count(func() (err error) {
			sh, challenge, err = w.srv.Start(rand.Reader, testNow, nil)
			return err
		})
		resp, err := w.clients[alg].Handshake().ReadChallenge(challenge, rand.Reader, testNow, nil)
		if err != nil {
			b.Fatal(err)
		}
		count(func() error {
			_, _, err := sh.ReadResponse(resp, rand.Reader, testNow)
			return err
		})
	}
	return float64(objects) / n, float64(size) / n
}

package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/protocol"
)

// payload64 is the message of the handshake round trip.
var payload64 = bytes.Repeat([]byte("w"), 64)

// op is one unit of handshake load: it connects (the latency it returns
// covers the connection up to an authenticated, or for baselines an open,
// socket), does one 64-byte round trip and closes.
type op func(ctx context.Context) (time.Duration, error)

// wsproofOp uses package client, as an application would.
func wsproofOp(u string, cfg *client.Config) op {
	return func(ctx context.Context) (time.Duration, error) {
		t0 := time.Now()
		c, err := client.Dial(ctx, u, cfg)
		lat := time.Since(t0)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		if err := c.Write(ctx, payload64); err != nil {
			return 0, err
		}
		m, err := c.Read(ctx)
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(m, payload64) {
			return 0, errors.New("echo mismatch")
		}
		return lat, c.Close()
	}
}

// gorillaDialer dials from source addresses of the pool when it is set.
func gorillaDialer(tlsConf *tls.Config, src *sources, subprotocols []string) *websocket.Dialer {
	d := &websocket.Dialer{TLSClientConfig: tlsConf, Subprotocols: subprotocols, HandshakeTimeout: 10 * time.Second}
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := checkLoopback(addr); err != nil {
			return nil, err
		}
		nd := net.Dialer{}
		if src != nil {
			nd.LocalAddr = src.next()
		}
		return nd.DialContext(ctx, network, addr)
	}
	return d
}

// closeGorilla runs the closing handshake: Close frame, wait for the peer's,
// close TCP.
func closeGorilla(ws *websocket.Conn) {
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := ws.NextReader(); err != nil {
			break
		}
	}
	ws.Close()
}

// plainOp is the baseline: the same upgrade, round trip and close on a
// stock gorilla handler, without authentication.
func plainOp(u string, d *websocket.Dialer) op {
	return func(ctx context.Context) (time.Duration, error) {
		t0 := time.Now()
		ws, _, err := d.DialContext(ctx, u, nil)
		lat := time.Since(t0)
		if err != nil {
			return 0, err
		}
		if dl, ok := ctx.Deadline(); ok {
			ws.SetReadDeadline(dl)
			ws.SetWriteDeadline(dl)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, payload64); err != nil {
			ws.Close()
			return 0, err
		}
		_, m, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return 0, err
		}
		if !bytes.Equal(m, payload64) {
			ws.Close()
			return 0, errors.New("echo mismatch")
		}
		ws.SetWriteDeadline(time.Time{})
		closeGorilla(ws)
		return lat, nil
	}
}

// centrifugeOp speaks Centrifuge's JSON client protocol: connect with the
// token (latency ends at the connect reply), one RPC carrying a 64-byte
// JSON string, close.
func centrifugeOp(u string, d *websocket.Dialer, token string) op {
	connect := []byte(`{"id":1,"connect":{"token":"` + token + `","name":"wsproof-bench"}}`)
	if token == "" {
		connect = []byte(`{"id":1,"connect":{"name":"wsproof-bench"}}`)
	}
	data := `"` + strings.Repeat("w", 62) + `"` // 64 bytes of JSON
	rpc := []byte(`{"id":2,"rpc":{"data":` + data + `}}`)
	return func(ctx context.Context) (time.Duration, error) {
		t0 := time.Now()
		ws, _, err := d.DialContext(ctx, u, nil)
		if err != nil {
			return 0, err
		}
		defer ws.Close()
		if dl, ok := ctx.Deadline(); ok {
			ws.SetReadDeadline(dl)
			ws.SetWriteDeadline(dl)
		}
		if err := ws.WriteMessage(websocket.TextMessage, connect); err != nil {
			return 0, err
		}
		_, m, err := ws.ReadMessage()
		if err != nil {
			return 0, err
		}
		lat := time.Since(t0)
		if !bytes.Contains(m, []byte(`"connect":{`)) || bytes.Contains(m, []byte(`"error"`)) {
			return 0, fmt.Errorf("connect refused: %.80s", m)
		}
		if err := ws.WriteMessage(websocket.TextMessage, rpc); err != nil {
			return 0, err
		}
		_, m, err = ws.ReadMessage()
		if err != nil {
			return 0, err
		}
		if !bytes.Contains(m, []byte(data)) {
			return 0, fmt.Errorf("rpc reply without the data: %.80s", m)
		}
		ws.SetWriteDeadline(time.Time{})
		closeGorilla(ws)
		return lat, nil
	}
}

// loadResult is one timed run of an op at a fixed concurrency.
type loadResult struct {
	Ops      int
	Failures map[string]int
	Elapsed  time.Duration
	Lat      []time.Duration // sorted
}

func (r *loadResult) failures() int {
	n := 0
	for _, v := range r.Failures {
		n += v
	}
	return n
}

// runOps runs op on conc workers until dur has passed or max ops have
// started, whichever comes first; each op is bounded by a 15 s deadline.
// The elapsed time runs until the last op has ended.
func runOps(conc int, dur time.Duration, max int, f op) *loadResult {
	var (
		started atomic.Int64
		mu      sync.Mutex
		wg      sync.WaitGroup
		res     = &loadResult{Failures: map[string]int{}}
	)
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lats []time.Duration
			fails := map[string]int{}
			for time.Now().Before(deadline) && started.Add(1) <= int64(max) {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				lat, err := f(ctx)
				cancel()
				if err != nil {
					fails[errKind(err)]++
					continue
				}
				lats = append(lats, lat)
			}
			mu.Lock()
			res.Lat = append(res.Lat, lats...)
			for k, v := range fails {
				res.Failures[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(t0)
	res.Ops = len(res.Lat)
	sort.Slice(res.Lat, func(i, j int) bool { return res.Lat[i] < res.Lat[j] })
	return res
}

// errKind names a failure for the tables: its spec code when it has one,
// otherwise a short, stable description.
func errKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return fmt.Sprintf("HTTP %d", se.code)
	}
	if code := protocol.CodeOf(err); code != "" {
		return string(code)
	}
	var ce *client.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("close %d", ce.Code)
	}
	var wce *websocket.CloseError
	if errors.As(err, &wce) {
		return fmt.Sprintf("close %d", wce.Code)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "connection reset"):
		return "connection reset"
	case strings.Contains(s, "cannot assign requested address"):
		return "no source port"
	case strings.Contains(s, "too many open files"):
		return "too many open files"
	case strings.Contains(s, "EOF"):
		return "EOF"
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// sources hands out source addresses in 127.2.0.0/16 so that many
// connections do not share one address's ephemeral ports.
type sources struct {
	n int
	i atomic.Uint64
}

func (s *sources) next() *net.TCPAddr {
	k := s.i.Add(1) % uint64(s.n)
	return &net.TCPAddr{IP: net.IPv4(127, 2, byte(k/250), byte(1+k%250))}
}

func wsURL(hostport, path string, tlsOn bool) string {
	scheme := "ws"
	if tlsOn {
		scheme = "wss"
	}
	return (&url.URL{Scheme: scheme, Host: hostport, Path: path}).String()
}

// percentile of sorted durations, p in [0,1].
func percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

// cdf returns 101 points: the latency (ms) at each whole percentile.
func cdf(s []time.Duration) []float64 {
	if len(s) == 0 {
		return nil
	}
	out := make([]float64, 101)
	for i := range out {
		out[i] = ms(percentile(s, float64(i)/100))
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

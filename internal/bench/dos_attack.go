package bench

// The attacker of the denial-of-service runs (dos.go): this program started
// again with the hidden "dos-attack" subcommand, so that the attack's own
// CPU, garbage and goroutines do not share a Go runtime with the process
// that measures the legitimate clients. It only ever dials the loopback
// address it is given, from source addresses in 127.5.0.0/16 (idle sockets)
// and 127.6.0.0/16 (the flood), and every loop ends on "stop", on the end of
// its standard input or after MaxLife, and is bounded in count (IdleMax,
// FloodMax).

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

const attackSubcommand = "dos-attack"

// Source-address pools of the denial-of-service runs, one /16 of
// 127.0.0.0/8 each, so that the server's per-address accounting sees each
// population on its own addresses.
const (
	poolSessions = 3 // authenticated sessions established before the attack
	poolLegit    = 4 // legitimate clients
	poolIdle     = 5 // idle unauthenticated sockets
	poolFlood    = 6 // bad handshakes
)

// poolAddr is the k-th source address of a pool: 127.pool.x.y.
func poolAddr(pool byte, k int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, pool, byte(k/250), byte(1+k%250))}
}

// attackConfig is what the load generator hands the attacker, in a file.
type attackConfig struct {
	WS         string          `json:"ws"` // the server's host:port; /ws is wsproof
	Identity   string          `json:"identity"`
	KeyID      string          `json:"kid"`     // a registered client key ...
	KeyPEM     []byte          `json:"key_pem"` // ... whose signatures the flood corrupts
	ServerKeys json.RawMessage `json:"server_keys"`

	Idle      int           `json:"idle"`       // idle unauthenticated sockets to hold
	IdleAddrs int           `json:"idle_addrs"` // spread over this many source addresses
	IdleRetry time.Duration `json:"idle_retry"` // pause after a refusal (jittered)
	IdleMax   int           `json:"idle_max"`   // count bound of the idle sockets' attempts

	FloodAddrs   int `json:"flood_addrs"`
	FloodWorkers int `json:"flood_workers"`
	FloodMax     int `json:"flood_max"` // count bound of the flood

	MaxLife time.Duration `json:"max_life"`
}

// attackReport is what the attacker prints when it stops.
type attackReport struct {
	Idle       IdleReport  `json:"idle"`
	Flood      FloodReport `json:"flood"`
	CPUSeconds float64     `json:"cpu_s"` // the attacker process's CPU time
}

// IdleReport counts the idle sockets' attempts: each slot opens a socket,
// never answers the challenge, and opens another as soon as the server's
// handshake deadline closes it, or after IdleRetry when it is refused.
type IdleReport struct {
	Sockets  int `json:"sockets"`
	Addrs    int `json:"addrs"`
	Attempts int `json:"attempts"`
	Admitted int `json:"admitted"`    // upgrades the server accepted and challenged
	Refused  int `json:"refused_429"` // upgrades refused with HTTP 429
	// Other are other outcomes of an attempt (other statuses, dial errors).
	Other map[string]int `json:"other,omitempty"`
	// Closed counts how the server ended admitted sockets, by close code.
	Closed map[string]int `json:"closed,omitempty"`
	// HeldPeak and HeldMean are the sockets admitted and still open, sampled
	// every 100 ms (the mean is over the flood).
	HeldPeak int     `json:"held_peak"`
	HeldMean float64 `json:"held_mean"`
	// HeldP50s and HeldMaxS are how long the server kept an admitted idle
	// socket open before closing it.
	HeldP50s float64 `json:"held_p50_s"`
	HeldMaxS float64 `json:"held_max_s"`
	// Held is the number held at each whole second since the idle sockets
	// started; FloodAt is the second the flood started.
	Held    []int `json:"held_per_s,omitempty"`
	FloodAt int   `json:"flood_at_s"`
}

// FloodReport counts the flood of bad handshakes: complete upgrades whose
// responses are bound to the challenge but carry a corrupted signature, as
// fast as FloodWorkers loops can go.
type FloodReport struct {
	Addrs    int     `json:"addrs"`
	Workers  int     `json:"workers"`
	Attempts int     `json:"attempts"`
	Refused  int     `json:"refused_429"`
	Admitted int     `json:"admitted"` // challenged, answered with a bad signature
	Accepted int     `json:"accepted"` // the server accepted a bad signature: must be 0
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"attempts_per_s"`
	// Rejected counts how the server closed the admitted attempts.
	Rejected map[string]int `json:"rejected,omitempty"`
	Other    map[string]int `json:"other,omitempty"`
}

// counts is a mutex-guarded map of outcome counts.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(k string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return nil
	}
	out := make(map[string]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

// srcKey carries the source address of one dial in its context.
type srcKey struct{}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind the
// source address now and choose the port at connect, by the whole 4-tuple,
// so that thousands of short connections from one address do not run out
// of ports held by TIME_WAIT.
const ipBindAddressNoPort = 24

// sourceDialer dials loopback only, from the source address in the dial's
// context.
func sourceDialer(timeout time.Duration) *websocket.Dialer {
	d := &websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: timeout}
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := checkLoopback(addr); err != nil {
			return nil, err
		}
		nd := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		if a, ok := ctx.Value(srcKey{}).(*net.TCPAddr); ok {
			nd.LocalAddr = a
		}
		return nd.DialContext(ctx, network, addr)
	}
	return d
}

// closeKind names how a socket ended: the close code and reason the peer
// sent, or the transport error.
func closeKind(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Text != "" {
			return fmt.Sprintf("close %d (%s)", ce.Code, ce.Text)
		}
		return fmt.Sprintf("close %d", ce.Code)
	}
	return errKind(err)
}

// attacker is the state of the attack child.
type attacker struct {
	cfg  *attackConfig
	u    string
	pc   *protocol.Client
	dial *websocket.Dialer

	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	// idle sockets
	idleStart                       time.Time
	idleAttempts, idleAdmitted      atomic.Int64
	idleRefused, held               atomic.Int64
	idleOther, idleClosed           counts
	heldMu                          sync.Mutex
	heldFor                         []time.Duration
	open                            map[*websocket.Conn]struct{}
	heldPeak                        int64
	heldSamples                     []int // every 100 ms since the idle sockets started
	floodSample                     int   // index of the first sample of the flood
	floodStart, floodEnd            time.Time
	floodAttempts, floodRefused     atomic.Int64
	floodAdmitted, floodAccepted    atomic.Int64
	floodRejected, floodOther       counts
	floodStarted, idleStarted, done bool
}

// attackChild runs the attacker: it prints a ready line, then obeys the
// commands on its standard input, one a line: "idle" starts the idle
// sockets, "flood" the flood, "stop" ends both and prints the report.
func attackChild(args []string) error {
	fs := flag.NewFlagSet(attackSubcommand, flag.ContinueOnError)
	cfgPath := fs.String("config", "", "attacker configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*cfgPath)
	if err != nil {
		return err
	}
	cfg := &attackConfig{}
	if err := json.Unmarshal(data, cfg); err != nil {
		return err
	}
	if err := checkLoopback(cfg.WS); err != nil {
		return err
	}
	signer, err := keys.ParsePrivateKey(cfg.KeyPEM)
	if err != nil {
		return err
	}
	pub, err := keys.ParsePublicSet(cfg.ServerKeys)
	if err != nil {
		return err
	}
	pc, err := protocol.NewClient(&protocol.ClientConfig{KeyID: cfg.KeyID, Signer: signer, ServerKeys: pub, ServerIdentity: cfg.Identity})
	if err != nil {
		return err
	}
	if _, err := raiseNofile(); err != nil {
		return err
	}
	maxLife := cfg.MaxLife
	if maxLife <= 0 {
		maxLife = time.Hour
	}
	ctx, cancel := context.WithTimeout(context.Background(), maxLife)
	defer cancel()
	a := &attacker{cfg: cfg, u: wsURL(cfg.WS, "/ws", false), pc: pc, dial: sourceDialer(10 * time.Second),
		ctx: ctx, stop: cancel, open: map[*websocket.Conn]struct{}{}}
	ready, _ := json.Marshal(childReady{PID: os.Getpid()})
	fmt.Println(string(ready))

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			a.end()
			return nil
		case line, ok := <-lines:
			if !ok { // the parent went away
				a.end()
				return nil
			}
			switch line {
			case "idle":
				a.startIdle()
			case "flood":
				a.startFlood()
			case "stop":
				a.end()
				rep, _ := json.Marshal(a.report())
				fmt.Println(string(rep))
			default:
				return fmt.Errorf("unknown command %q", line)
			}
		}
	}
}

// end stops every loop, closes every socket and waits for the loops.
func (a *attacker) end() {
	if a.done {
		return
	}
	a.stop()
	a.heldMu.Lock()
	a.done = true
	for ws := range a.open {
		ws.NetConn().Close()
	}
	a.heldMu.Unlock()
	a.wg.Wait()
	if a.floodStarted {
		a.floodEnd = time.Now()
	}
}

func (a *attacker) startIdle() {
	if a.idleStarted {
		return
	}
	a.idleStarted = true
	a.idleStart = time.Now()
	a.wg.Add(1)
	go func() { // sampler
		defer a.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-a.ctx.Done():
				return
			case <-t.C:
				h := a.held.Load()
				a.heldMu.Lock()
				a.heldSamples = append(a.heldSamples, int(h))
				a.heldPeak = max(a.heldPeak, h)
				a.heldMu.Unlock()
			}
		}
	}()
	for i := range a.cfg.Idle {
		src := poolAddr(poolIdle, i%max(1, a.cfg.IdleAddrs))
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			// Stagger the first attempts over 100 ms.
			if !sleepCtx(a.ctx, time.Duration(rand.Int64N(int64(100*time.Millisecond)))) {
				return
			}
			for a.ctx.Err() == nil {
				if !a.idleOnce(src) {
					retry := a.cfg.IdleRetry/2 + time.Duration(rand.Int64N(int64(a.cfg.IdleRetry)+1))
					if !sleepCtx(a.ctx, retry) {
						return
					}
				}
			}
		}()
	}
}

// idleOnce opens one socket and holds it, silent, until the server closes
// it. It reports whether the server admitted it.
func (a *attacker) idleOnce(src *net.TCPAddr) bool {
	if a.idleAttempts.Add(1) > int64(a.cfg.IdleMax) {
		a.idleAttempts.Add(-1)
		sleepCtx(a.ctx, time.Hour) // the count bound: wait for the end
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithValue(a.ctx, srcKey{}, src), 10*time.Second)
	ws, resp, err := a.dial.DialContext(ctx, a.u, nil)
	cancel()
	if err != nil {
		err = upgradeErr(err, resp)
		if se := (*statusError)(nil); errors.As(err, &se) && se.code == 429 {
			a.idleRefused.Add(1)
		} else if a.ctx.Err() == nil {
			a.idleOther.add(errKind(err))
		}
		return false
	}
	admitted := time.Now()
	a.idleAdmitted.Add(1)
	if !a.track(ws) {
		return true
	}
	a.held.Add(1)
	// Read the challenge and never answer; the next read ends when the
	// server gives up on the socket.
	for {
		if _, _, err = ws.ReadMessage(); err != nil {
			break
		}
	}
	a.held.Add(-1)
	a.untrack(ws)
	a.heldMu.Lock()
	if !a.done {
		a.heldFor = append(a.heldFor, time.Since(admitted))
	}
	a.heldMu.Unlock()
	if a.ctx.Err() == nil {
		a.idleClosed.add(closeKind(err))
	}
	return true
}

// track registers an open socket so that end can close it; it reports
// false, and closes the socket, when the attack has already ended.
func (a *attacker) track(ws *websocket.Conn) bool {
	a.heldMu.Lock()
	defer a.heldMu.Unlock()
	if a.done {
		ws.Close()
		return false
	}
	a.open[ws] = struct{}{}
	return true
}

// untrack forgets and closes a socket.
func (a *attacker) untrack(ws *websocket.Conn) {
	a.heldMu.Lock()
	delete(a.open, ws)
	a.heldMu.Unlock()
	ws.Close()
}

func (a *attacker) startFlood() {
	if a.floodStarted {
		return
	}
	a.floodStarted = true
	a.floodStart = time.Now()
	a.heldMu.Lock()
	a.floodSample = len(a.heldSamples)
	a.heldMu.Unlock()
	var next atomic.Int64
	for range a.cfg.FloodWorkers {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for a.ctx.Err() == nil {
				n := next.Add(1)
				if n > int64(a.cfg.FloodMax) {
					return
				}
				a.floodOnce(poolAddr(poolFlood, int(n)%max(1, a.cfg.FloodAddrs)))
			}
		}()
	}
}

// floodOnce is one bad handshake: upgrade, read the challenge, answer with
// a response bound to it (so that the server's cheap checks pass and it
// must verify the signature) whose signature has one bit flipped, and read
// until the server closes the socket.
func (a *attacker) floodOnce(src *net.TCPAddr) {
	a.floodAttempts.Add(1)
	ctx, cancel := context.WithTimeout(context.WithValue(a.ctx, srcKey{}, src), 10*time.Second)
	defer cancel()
	ws, resp, err := a.dial.DialContext(ctx, a.u, nil)
	if err != nil {
		err = upgradeErr(err, resp)
		if se := (*statusError)(nil); errors.As(err, &se) && se.code == 429 {
			a.floodRefused.Add(1)
		} else if a.ctx.Err() == nil {
			a.floodOther.add(errKind(err))
		}
		return
	}
	if !a.track(ws) {
		return
	}
	defer a.untrack(ws)
	a.floodAdmitted.Add(1)
	dl, _ := ctx.Deadline()
	ws.SetReadDeadline(dl)
	ws.SetWriteDeadline(dl)
	_, msg, err := ws.ReadMessage()
	if err != nil {
		if a.ctx.Err() == nil {
			a.floodOther.add("challenge: " + closeKind(err))
		}
		return
	}
	r, err := a.pc.Handshake().ReadChallenge(msg, crand.Reader, time.Now(), nil)
	if err != nil {
		a.floodOther.add("challenge: " + errKind(err))
		return
	}
	if err := ws.WriteMessage(websocket.TextMessage, corruptSignature(r)); err != nil {
		if a.ctx.Err() == nil {
			a.floodOther.add("write: " + errKind(err))
		}
		return
	}
	for {
		mt, _, err := ws.ReadMessage()
		if err != nil {
			if a.ctx.Err() == nil {
				a.floodRejected.add(closeKind(err))
			}
			return
		}
		if mt == websocket.TextMessage { // an accept: the server took a bad signature
			a.floodAccepted.Add(1)
			return
		}
	}
}

// corruptSignature flips one bit in the middle of a compact JWS's
// signature, keeping its encoding and length valid.
func corruptSignature(jws []byte) []byte {
	i := strings.LastIndexByte(string(jws), '.')
	if i < 0 {
		return jws
	}
	sig, err := base64.RawURLEncoding.DecodeString(string(jws[i+1:]))
	if err != nil || len(sig) == 0 {
		return jws
	}
	sig[len(sig)/4] ^= 0x10
	out := append([]byte(nil), jws[:i+1]...)
	return append(out, base64.RawURLEncoding.EncodeToString(sig)...)
}

func (a *attacker) report() *attackReport {
	c := a.cfg
	r := &attackReport{CPUSeconds: selfCPU() / 1e6}
	a.heldMu.Lock()
	held := append([]time.Duration(nil), a.heldFor...)
	samples := append([]int(nil), a.heldSamples...)
	peak := a.heldPeak
	floodSample := a.floodSample
	a.heldMu.Unlock()
	sort.Slice(held, func(i, j int) bool { return held[i] < held[j] })
	r.Idle = IdleReport{Sockets: c.Idle, Addrs: c.IdleAddrs, Attempts: int(a.idleAttempts.Load()),
		Admitted: int(a.idleAdmitted.Load()), Refused: int(a.idleRefused.Load()),
		Other: a.idleOther.snapshot(), Closed: a.idleClosed.snapshot(), HeldPeak: int(peak),
		HeldP50s: percentile(held, 0.5).Seconds(), HeldMaxS: percentile(held, 1).Seconds(), FloodAt: floodSample / 10}
	if a.floodStarted && floodSample < len(samples) {
		sum := 0
		for _, v := range samples[floodSample:] {
			sum += v
		}
		r.Idle.HeldMean = float64(sum) / float64(len(samples)-floodSample)
	}
	for i := 9; i < len(samples); i += 10 {
		r.Idle.Held = append(r.Idle.Held, samples[i])
	}
	if a.floodStarted {
		r.Flood = FloodReport{Addrs: c.FloodAddrs, Workers: c.FloodWorkers, Attempts: int(a.floodAttempts.Load()),
			Refused: int(a.floodRefused.Load()), Admitted: int(a.floodAdmitted.Load()), Accepted: int(a.floodAccepted.Load()),
			Rejected: a.floodRejected.snapshot(), Other: a.floodOther.snapshot(), Seconds: a.floodEnd.Sub(a.floodStart).Seconds()}
		if r.Flood.Seconds > 0 {
			r.Flood.Rate = float64(r.Flood.Attempts) / r.Flood.Seconds
		}
	}
	return r
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// readAttackReport reads the attacker's report line after "stop".
func readAttackReport(r io.Reader) (*attackReport, error) {
	rep := &attackReport{}
	return rep, json.NewDecoder(r).Decode(rep)
}

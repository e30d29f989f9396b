package bench

// Counting the upgrades the server admits (issue 12, defect 8): the server
// child wraps the wsproof handler of the denial-of-service runs so that
// every upgrade that gets past the limiter, and so hijacks its connection
// to sign a challenge, is timed. The load generator resets the count at the
// start of each phase and reads it at the end, and checks it against the
// global bound: at most burst + HandshakeRate x T upgrades in any T seconds,
// whatever the number of client addresses.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// AdmitReport is what the server admitted during one phase.
type AdmitReport struct {
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
	// MaxPerS is the largest number admitted in any one-second window.
	MaxPerS int `json:"max_per_s"`
	// Excess is the smallest burst that explains the admissions at the
	// configured rate: the largest count in any interval less rate times
	// its length. The limiter's bound is Excess <= its burst.
	Excess float64 `json:"excess"`
	Rate   float64 `json:"rate"`
}

// admissions times the upgrades of a wsproof handler. Excess is kept as a
// running maximum, in constant memory: for admissions at x_0 <= x_1 <= ...
// (seconds), the largest (j - i + 1) - rate*(x_j - x_i) over i <= j is the
// largest (j + 1) - rate*x_j + max over i <= j of (rate*x_i - i).
type admissions struct {
	mu        sync.Mutex
	rate      float64
	start     time.Time
	n         int
	bestStart float64
	excess    float64
	window    []time.Time // admissions of the last second
	maxPerS   int
}

func (a *admissions) reset(rate float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rate, a.start, a.n, a.bestStart, a.excess, a.window, a.maxPerS = rate, time.Now(), 0, 0, 0, nil, 0
}

func (a *admissions) add(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	x := t.Sub(a.start).Seconds()
	j := float64(a.n)
	if a.n == 0 {
		a.bestStart = a.rate * x
	} else {
		a.bestStart = max(a.bestStart, a.rate*x-j)
	}
	a.excess = max(a.excess, j+1-a.rate*x+a.bestStart)
	a.n++
	i := 0
	for i < len(a.window) && !a.window[i].After(t.Add(-time.Second)) {
		i++
	}
	a.window = append(a.window[i:], t)
	a.maxPerS = max(a.maxPerS, len(a.window))
}

func (a *admissions) report() AdmitReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return AdmitReport{Count: a.n, Seconds: time.Since(a.start).Seconds(), MaxPerS: a.maxPerS, Excess: a.excess, Rate: a.rate}
}

// wrap times each upgrade of h: the moment the handler hijacks the
// connection, which it does only for an upgrade the limiter admitted.
func (a *admissions) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&hijackTimer{ResponseWriter: w, a: a}, r)
	})
}

type hijackTimer struct {
	http.ResponseWriter
	a *admissions
}

func (h *hijackTimer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err == nil {
		h.a.add(time.Now())
	}
	return c, brw, err
}

// handle serves the control endpoints: /admissions/reset?rate=R starts a
// phase, /admissions reports it.
func (a *admissions) handle(mux *http.ServeMux) {
	mux.HandleFunc("/admissions/reset", func(w http.ResponseWriter, r *http.Request) {
		rate, err := strconv.ParseFloat(r.URL.Query().Get("rate"), 64)
		if err != nil || rate < 0 {
			http.Error(w, "rate", http.StatusBadRequest)
			return
		}
		a.reset(rate)
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/admissions", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(a.report())
	})
}

// resetAdmissions starts counting the child's admissions at rate.
func (c *child) resetAdmissions(rate float64) error {
	return c.get(fmt.Sprintf("/admissions/reset?rate=%g", rate), nil)
}

func (c *child) admissions() (AdmitReport, error) {
	var r AdmitReport
	err := c.get("/admissions", &r)
	return r, err
}

// burstOf is the server's burst for a rate (server/limit.go): twice the
// rate, rounded up, at least 1.
func burstOf(r float64) float64 { return max(1, math.Ceil(2*r)) }

// boundSlack is how late the hijack may come after the limiter's decision
// before the count shows it: the bound is checked as burst + rate x
// boundSlack.
const boundSlack = 100 * time.Millisecond

package bench

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAdmissionsExcess: the running maximum equals the largest count in
// any interval less rate times its length, computed by brute force.
func TestAdmissionsExcess(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		rate := []float64{1, 10, 100}[trial%3]
		a := &admissions{}
		a.reset(rate)
		t0 := a.start
		var ts []time.Time
		now := t0
		for range 1 + r.IntN(300) {
			if r.IntN(3) > 0 { // bursts: a third of the arrivals move the time
				now = now.Add(time.Duration(r.Int64N(int64(50 * time.Millisecond))))
			}
			ts = append(ts, now)
			a.add(now)
		}
		want, perS := 0.0, 0
		for i := range ts {
			for j := i; j < len(ts); j++ {
				want = max(want, float64(j-i+1)-rate*ts[j].Sub(ts[i]).Seconds())
				if ts[j].Sub(ts[i]) < time.Second {
					perS = max(perS, j-i+1)
				}
			}
		}
		got := a.report()
		if d := got.Excess - want; d > 1e-9 || d < -1e-9 || got.Count != len(ts) || got.MaxPerS != perS {
			t.Fatalf("trial %d: excess %v max/s %d count %d, want %v %d %d", trial, got.Excess, got.MaxPerS, got.Count, want, perS, len(ts))
		}
	}
}

// Package fakeclock is a clock that tests set by hand, for the live
// session-vector tests of server and client: their state machines' timers
// fire when a script's step moves the time, on the test's goroutine.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a settable clock. The zero value is not usable; use New.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*Timer
}

// Timer is a timer of a Clock.
type Timer struct {
	c      *Clock
	at     time.Time
	f      func()
	active bool
}

// New returns a Clock at now.
func New(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arranges for f to run when Advance moves the clock to d after
// now or later.
func (c *Clock) AfterFunc(d time.Duration, f func()) *Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &Timer{c: c, at: c.now.Add(d), f: f, active: true}
	c.timers = append(c.timers, t)
	return t
}

// Reset rearms t for d after the clock's now, as time.Timer.Reset does.
func (t *Timer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.at, t.active = t.c.now.Add(d), true
	return was
}

// Stop disarms t, as time.Timer.Stop does.
func (t *Timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

// Set moves the clock to at and fires nothing.
func (c *Clock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

// Advance moves the clock to at and runs, on the caller's goroutine, every
// timer that is then due.
func (c *Clock) Advance(at time.Time) {
	c.mu.Lock()
	c.now = at
	var due []func()
	for _, t := range c.timers {
		if t.active && !t.at.After(at) {
			t.active = false
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

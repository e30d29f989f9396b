package client

import "time"

// clock is where a Conn reads the time it reports to its state machine and
// arms the machine's one timer. The default is the system clock (or
// Config.Time); tests replace it to step the machine's time exactly.
// Deadlines of network I/O (writes, the closing handshake) always use the
// system clock.
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) timer
}

// timer is the part of *time.Timer a Conn uses.
type timer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// systemClock is the default clock: now (time.Now or Config.Time) and the
// runtime's timers.
type systemClock struct{ now func() time.Time }

func (c systemClock) Now() time.Time { return c.now() }

func (systemClock) AfterFunc(d time.Duration, f func()) timer { return time.AfterFunc(d, f) }

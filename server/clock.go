package server

import "time"

// clock is where a Server reads the time it reports to the state machines
// and arms each socket's one machine timer. The default is the system clock
// (or Config.Time); tests replace it to step the machines' time exactly.
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

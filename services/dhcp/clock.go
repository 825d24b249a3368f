package dhcp

import "time"

// Clock is the client's source of time, injectable so that tests can
// drive retransmissions and lease timers without sleeping.
type Clock interface {
	Now() time.Time
	// At returns a channel that receives a value once Now has reached
	// t, and a function that releases the timer. A zero t never fires
	// (the channel may be nil).
	At(t time.Time) (<-chan time.Time, func())
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// At implements Clock.
func (SystemClock) At(t time.Time) (<-chan time.Time, func()) {
	if t.IsZero() {
		return nil, func() {}
	}
	tm := time.NewTimer(time.Until(t))
	return tm.C, func() { tm.Stop() }
}

// Package progress prints a line for steps that take long enough for a user
// to wonder what is happening, and nothing for quick ones.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Delay is how long a step runs before its line is printed.
const Delay = time.Second

// Step is one announced operation.
type Step struct {
	w       io.Writer
	msg     string
	start   time.Time
	mu      sync.Mutex
	timer   *time.Timer
	printed bool
	done    bool
}

// Start begins a step; msg (e.g. "building ./cmd/x") is printed to w as
// "unikbuild: msg..." once the step has run for Delay. A nil w keeps it quiet.
func Start(w io.Writer, msg string) *Step { return startAfter(w, msg, Delay) }

func startAfter(w io.Writer, msg string, delay time.Duration) *Step {
	s := &Step{w: w, msg: msg, start: time.Now()}
	if w != nil {
		s.timer = time.AfterFunc(delay, s.announce)
	}
	return s
}

func (s *Step) announce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.printed = true
	fmt.Fprintf(s.w, "unikbuild: %s...\n", s.msg)
}

// Done ends the step. If its line was printed, a second line gives the time
// it took.
func (s *Step) Done() {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	if s.printed {
		fmt.Fprintf(s.w, "unikbuild: %s: done in %.1fs\n", s.msg, time.Since(s.start).Seconds())
	}
}

// Cancel ends the step without the closing line, for steps whose own output
// (such as a guest console) shows that they are under way.
func (s *Step) Cancel() {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

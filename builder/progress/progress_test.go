package progress

import (
	"bytes"
	"regexp"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the timer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStep(t *testing.T) {
	const delay = 20 * time.Millisecond
	tests := []struct {
		name   string
		run    time.Duration
		cancel bool
		want   string // regexp
	}{
		{"quick step is quiet", 0, false, `^$`},
		{"slow step announces and reports", 5 * delay, false, `^unikbuild: building x\.\.\.\nunikbuild: building x: done in \d+\.\ds\n$`},
		{"cancelled slow step has no closing line", 5 * delay, true, `^unikbuild: building x\.\.\.\n$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			s := startAfter(&buf, "building x", delay)
			time.Sleep(tt.run)
			if tt.cancel {
				s.Cancel()
			} else {
				s.Done()
			}
			s.Done() // a second end is a no-op
			time.Sleep(2 * delay)
			if !regexp.MustCompile(tt.want).MatchString(buf.String()) {
				t.Errorf("output %q, want match for %q", buf.String(), tt.want)
			}
		})
	}
	Start(nil, "quiet").Done() // a nil writer never prints or panics
}

package qubesdb

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// DefaultMaxBytes bounds a database copy: the sum of key and value lengths.
// A real Qubes VM database is a few kilobytes; the bound stops a peer from
// filling a 32 MB unikernel with entries.
const DefaultMaxBytes = 1 << 20

// watchQueueLen bounds the events queued for one watcher. A consumer that
// falls further behind loses the queued events and gets one Event with
// Lost set, telling it to re-read the database.
const watchQueueLen = 1024

// Entry is one database entry.
type Entry struct {
	Path  string
	Value string
}

// Event reports one change to a watched part of the database.
type Event struct {
	Path    string
	Value   string // the new value; empty when Removed
	Removed bool
	// Lost means the consumer fell behind and earlier events were dropped;
	// Path and Value are empty. Re-read what the watch covers.
	Lost bool
}

// store is the database with its size accounting and watchers.
type store struct {
	mu       sync.RWMutex
	m        map[string]string
	bytes    int
	maxBytes int
	watchers map[*Watcher]struct{}
	closed   bool
}

func newStore(maxBytes int) *store {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &store{m: make(map[string]string), maxBytes: maxBytes, watchers: make(map[*Watcher]struct{})}
}

// writeLocked stores key=value and fires watches. Caller holds mu.
func (s *store) writeLocked(key, value string) error {
	n, err := s.sizeAfterLocked(key, value)
	if err != nil {
		return err
	}
	s.m[key] = value
	s.bytes = n
	s.fireLocked(Event{Path: key, Value: value})
	return nil
}

// sizeAfterLocked is the database's size once key holds value, or an
// error if that is over the limit. Caller holds mu.
func (s *store) sizeAfterLocked(key, value string) (int, error) {
	old, had := s.m[key]
	n := s.bytes + len(value)
	if had {
		n -= len(old)
	} else {
		n += len(key)
	}
	if n > s.maxBytes {
		return 0, fmt.Errorf("qubesdb: writing %q would grow the database to %d bytes, limit is %d", key, n, s.maxBytes)
	}
	return n, nil
}

// rmLocked removes key, or every entry under path if it ends with '/', and
// fires watches. It returns how many entries went. Caller holds mu.
func (s *store) rmLocked(path string) int {
	if !strings.HasSuffix(path, "/") {
		v, ok := s.m[path]
		if !ok {
			return 0
		}
		delete(s.m, path)
		s.bytes -= len(path) + len(v)
		s.fireLocked(Event{Path: path, Removed: true})
		return 1
	}
	gone := s.keysLocked(path)
	for _, k := range gone {
		s.bytes -= len(k) + len(s.m[k])
		delete(s.m, k)
		s.fireLocked(Event{Path: k, Removed: true})
	}
	return len(gone)
}

// matchesLocked reports whether path would be removed by rmLocked.
func (s *store) matchesLocked(path string) bool {
	if !strings.HasSuffix(path, "/") {
		_, ok := s.m[path]
		return ok
	}
	for k := range s.m {
		if strings.HasPrefix(k, path) {
			return true
		}
	}
	return false
}

// keysLocked lists keys starting with prefix, sorted.
func (s *store) keysLocked(prefix string) []string {
	var ks []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

func (s *store) read(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[key]
	return v, ok
}

func (s *store) list(prefix string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keysLocked(prefix)
}

func (s *store) multiread(prefix string) []Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ks := s.keysLocked(prefix)
	es := make([]Entry, len(ks))
	for i, k := range ks {
		es[i] = Entry{Path: k, Value: s.m[k]}
	}
	return es
}

// Watcher delivers the events of one watch on C until Close or until the
// connection ends, when C is closed.
type Watcher struct {
	// C receives the events in the order the database changed.
	C <-chan Event

	path string
	s    *store
	out  chan Event

	mu     sync.Mutex
	queue  []Event
	wake   chan struct{}
	stop   chan struct{} // closed by Close: drop the queue, close C
	finish chan struct{} // closed when the connection ends: drain, close C
	closed bool
	ended  bool
}

// matches follows QubesDB watch semantics: a path ending in '/' covers
// every entry below it, any other path exactly one entry.
func (w *Watcher) matches(p string) bool {
	if strings.HasSuffix(w.path, "/") {
		return strings.HasPrefix(p, w.path)
	}
	return p == w.path
}

func (s *store) watch(path string) (*Watcher, error) {
	if err := checkRmPath(path); err != nil {
		return nil, err
	}
	out := make(chan Event)
	w := &Watcher{C: out, out: out, path: path, s: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), finish: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	go w.pump()
	return w, nil
}

func (s *store) fireLocked(e Event) {
	for w := range s.watchers {
		if w.matches(e.Path) {
			w.push(e)
		}
	}
}

// closeWatchers ends every watch; later watches fail with ErrClosed.
func (s *store) closeWatchers() {
	s.mu.Lock()
	s.closed = true
	ws := s.watchers
	s.watchers = map[*Watcher]struct{}{}
	s.mu.Unlock()
	for w := range ws {
		w.end()
	}
}

func (w *Watcher) push(e Event) {
	w.mu.Lock()
	if len(w.queue) >= watchQueueLen {
		w.queue = append(w.queue[:0], Event{Lost: true})
	}
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) pump() {
	defer close(w.out)
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.mu.Unlock()
			select {
			case <-w.wake:
				continue
			case <-w.stop:
				return
			case <-w.finish:
				w.mu.Lock()
				n := len(w.queue)
				w.mu.Unlock()
				if n == 0 {
					return
				}
				continue
			}
		}
		e := w.queue[0]
		w.queue = w.queue[1:]
		w.mu.Unlock()
		select {
		case w.out <- e:
		case <-w.stop:
			return
		}
	}
}

// end is called when the connection ends: C closes after the queue drains.
func (w *Watcher) end() {
	w.mu.Lock()
	if !w.ended {
		w.ended = true
		close(w.finish)
	}
	w.mu.Unlock()
}

func (w *Watcher) shut() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.mu.Unlock()
}

// Close ends the watch and closes C. Events not yet received are dropped.
func (w *Watcher) Close() {
	w.s.mu.Lock()
	delete(w.s.watchers, w)
	w.s.mu.Unlock()
	w.shut()
}

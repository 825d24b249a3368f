package xenstore

import (
	"context"
	"strconv"
	"strings"
	"sync"
)

// Event is one firing of a watch: Path is the node that changed (a child
// of the watched path, or the watched path itself), Token the watch's
// token. Like xenstored's, events may be spurious and several changes may
// be reported as one: react by re-reading, not by counting events.
type Event struct {
	Path  string
	Token string
}

// maxQueuedEvents bounds the events a watch holds for a slow receiver.
// Beyond it the queue collapses into one event for the watched path
// itself, which tells the receiver that something below changed; memory
// stays bounded whatever xenstored sends.
const maxQueuedEvents = 256

// Watch is a registered xenstore watch. Its events arrive on Events()
// until Unwatch or the client's end, when the channel is closed.
type Watch struct {
	path, token string

	out  chan Event
	kick chan struct{} // capacity 1: the queue became non-empty

	stopCh   chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	queue   []Event
	queued  map[string]bool // paths in queue: repeated changes coalesce
	stopped bool
}

// Path returns the watched path as registered (relative if it was).
func (w *Watch) Path() string { return w.path }

// Token returns the watch's token.
func (w *Watch) Token() string { return w.token }

// Events returns the channel on which the watch's events arrive. The
// first arrives straight after registration (xenstored fires every new
// watch once).
func (w *Watch) Events() <-chan Event { return w.out }

func newWatch(path, token string) *Watch {
	w := &Watch{
		path:   path,
		token:  token,
		out:    make(chan Event),
		kick:   make(chan struct{}, 1),
		stopCh: make(chan struct{}),
		queued: make(map[string]bool),
	}
	go w.deliver()
	return w
}

// push queues an event; the reader goroutine calls it and must never
// block on a receiver.
func (w *Watch) push(ev Event) {
	w.mu.Lock()
	switch {
	case w.stopped || w.queued[ev.Path]:
	case len(w.queue) >= maxQueuedEvents:
		w.queue = append(w.queue[:0], Event{Path: w.path, Token: w.token})
		clear(w.queued)
		w.queued[w.path] = true
	default:
		w.queue = append(w.queue, ev)
		w.queued[ev.Path] = true
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Watch) stop() {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		w.stopped = true
		w.queue = nil
		w.mu.Unlock()
		close(w.stopCh)
	})
}

// deliver moves queued events to the receiver, one goroutine per watch,
// so that a receiver that is slow (or calls back into the client) never
// holds up the client's reader.
func (w *Watch) deliver() {
	defer close(w.out)
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.mu.Unlock()
			select {
			case <-w.kick:
				continue
			case <-w.stopCh:
				return
			}
		}
		ev := w.queue[0]
		w.queue = w.queue[1:]
		delete(w.queued, ev.Path)
		w.mu.Unlock()
		select {
		case w.out <- ev:
		case <-w.stopCh:
			return
		}
	}
}

// Watch registers a watch on path (a node or a special path such as
// @releaseDomain) with the given token; an empty token gets a unique one.
// Tokens identify watches, so the client refuses a token already in use
// with EEXIST.
func (c *Client) Watch(ctx context.Context, path, token string) (*Watch, error) {
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	if strings.IndexByte(token, 0) >= 0 {
		return nil, errLocal("EINVAL", "watch token contains NUL")
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	if token == "" {
		c.tokenN++
		token = "go-" + strconv.FormatUint(c.tokenN, 10)
	}
	if c.watches[token] != nil {
		c.mu.Unlock()
		return nil, errLocal("EEXIST", "watch token %q in use", truncate(token))
	}
	// Registered before the request: the first event may overtake the reply.
	w := newWatch(path, token)
	c.watches[token] = w
	c.mu.Unlock()

	// If ctx ends before the reply, the watch may still be set up in
	// xenstored: remove it there when its reply turns up.
	late := func(m Message) {
		c.mu.Lock()
		reused := c.watches[token] != nil
		c.mu.Unlock()
		if m.Type != TypeWatch || reused {
			return
		}
		uctx, cancel := context.WithTimeout(context.Background(), endTimeout)
		defer cancel()
		c.request(uctx, TypeUnwatch, 0, joinStrings(path, token), nil)
	}
	if err := ack(c.request(ctx, TypeWatch, 0, joinStrings(path, token), late)); err != nil {
		c.removeWatch(w)
		return nil, err
	}
	return w, nil
}

func (c *Client) removeWatch(w *Watch) {
	c.mu.Lock()
	if c.watches[w.token] == w {
		delete(c.watches, w.token)
	}
	c.mu.Unlock()
	w.stop()
}

// Unwatch removes w: its channel is closed (events still queued are
// dropped) and xenstored is told to forget it.
func (c *Client) Unwatch(ctx context.Context, w *Watch) error {
	c.removeWatch(w)
	return ack(c.request(ctx, TypeUnwatch, 0, joinStrings(w.path, w.token), nil))
}

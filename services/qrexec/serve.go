package qrexec

import (
	"context"
	"errors"
	"io"
	"sync"
)

// serveControl prepares one Serve of a control connection, for the agent
// and the daemon alike: it claims *serving (under mu), refusing a second
// concurrent Serve with busy as the error text, and ties ctrl to the
// returned context so that cancelling it unblocks every read. Serve calls
// cancel before waiting for its workers; done closes ctrl, cancels the
// context and releases the claim, and Serve defers it first.
func serveControl(ctx context.Context, ctrl io.Closer, mu *sync.Mutex, serving *bool, busy string) (context.Context, context.CancelFunc, func(), error) {
	mu.Lock()
	if *serving {
		mu.Unlock()
		ctrl.Close()
		return nil, nil, nil, errors.New("qrexec: " + busy)
	}
	*serving = true
	mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { ctrl.Close() })
	done := func() {
		ctrl.Close()
		stop()
		cancel()
		mu.Lock()
		*serving = false
		mu.Unlock()
	}
	return ctx, cancel, done, nil
}

package xenlab

import (
	"strings"
	"sync"
	"time"
)

// Stream calls xen for each new line the guest writes to Xen's console
// (port 0xE9) and con for each new line of its PV console, as they appear,
// until the returned stop is called; stop delivers what is left and waits.
// Either callback may be nil.
func (g *Guest) Stream(xen, con func(line string)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		xenSeen, conSeen := 0, 0
		flush := func() {
			if xen != nil {
				xl := g.XenLines()
				for ; xenSeen < len(xl); xenSeen++ {
					xen(xl[xenSeen])
				}
			}
			if con != nil {
				c := g.Console()
				if i := strings.LastIndexByte(c, '\n'); i >= 0 {
					lines := strings.Split(strings.ReplaceAll(c[:i], "\r", ""), "\n")
					for ; conSeen < len(lines); conSeen++ {
						con(lines[conSeen])
					}
				}
			}
		}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				flush()
				return
			case <-t.C:
				flush()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

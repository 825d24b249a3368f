package xenlab

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ctlMsg is one line from dom0's control loop (see assets/dom0-init).
type ctlMsg struct {
	verb string // READY, FAIL, OUT or END
	id   int
	rest string // FAIL: step; OUT: decoded output; END: exit status
}

// ctlReader parses the control channel into messages. It runs in its own goroutine and
// closes msgs when the channel ends (QEMU exited or the socket closed); the callers then
// report QEMU's state and Xen's console, which say more than the read error.
func ctlReader(r io.Reader, msgs chan<- ctlMsg) {
	defer close(msgs)
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		m, ok := parseCtlLine(strings.TrimRight(line, "\r\n"))
		if ok {
			msgs <- m
		}
	}
}

// parseCtlLine parses one protocol line; anything else (stray console output) is ignored.
func parseCtlLine(line string) (ctlMsg, bool) {
	verb, rest, _ := strings.Cut(line, " ")
	switch verb {
	case "READY":
		return ctlMsg{verb: verb}, true
	case "FAIL":
		return ctlMsg{verb: verb, rest: rest}, true
	case "OUT", "END":
		idStr, payload, _ := strings.Cut(rest, " ")
		id, err := strconv.Atoi(idStr)
		if err != nil {
			return ctlMsg{}, false
		}
		if verb == "OUT" {
			out, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
			if err != nil {
				out = []byte(fmt.Sprintf("xenlab: undecodable output from dom0: %v", err))
			}
			payload = string(out)
		}
		return ctlMsg{verb: verb, id: id, rest: payload}, true
	}
	return ctlMsg{}, false
}

// runLine encodes one RUN request.
func runLine(id int, timeoutSec int, script string) string {
	return fmt.Sprintf("RUN %d %d %s\n", id, timeoutSec, base64.StdEncoding.EncodeToString([]byte(script)))
}

package qrexec

import (
	"fmt"
	"strings"
)

const (
	rpcPrefix   = "QUBESRPC" // RPC_REQUEST_COMMAND
	noGUIPrefix = "nogui:"   // NOGUI_CMD_PREFIX
)

// Command is a parsed EXEC_CMDLINE / JUST_EXEC command line. dom0 sends
// "user:command"; an RPC call has the form
// "user:QUBESRPC service+arg source [more]" (more follows for calls to
// dom0 and is ignored, as by the Linux agent).
type Command struct {
	User    string // before the first ':' ("DEFAULT", "root", ...)
	NoGUI   bool   // the command had a "nogui:" prefix
	Command string // after "user:" and "nogui:"

	// Set only for QUBESRPC commands.
	IsRPC   bool
	Service string // "qubes.Foo", never empty for an RPC
	Arg     string // after '+'; empty if none was given
	Source  string // calling domain, a valid domain name for an RPC
}

// ParseCommand splits a command line following the Linux agent's
// parse_qubes_rpc_command, refusing what it refuses.
func ParseCommand(cmdline string) (Command, error) {
	user, rest, ok := strings.Cut(cmdline, ":")
	if !ok {
		return Command{}, fmt.Errorf("qrexec: command line %.40q has no \"user:\" part", cmdline)
	}
	c := Command{User: user}
	if r, ok := strings.CutPrefix(rest, noGUIPrefix); ok {
		c.NoGUI, rest = true, r
	}
	c.Command = rest
	r, ok := strings.CutPrefix(rest, rpcPrefix)
	if !ok {
		return c, nil
	}
	r, ok = strings.CutPrefix(r, " ")
	if !ok {
		return Command{}, fmt.Errorf("qrexec: %q not followed by a space in %.60q", rpcPrefix, cmdline)
	}
	desc, r, ok := strings.Cut(r, " ")
	if !ok {
		return Command{}, fmt.Errorf("qrexec: no source domain after the service in %.60q", cmdline)
	}
	if desc == "" {
		return Command{}, fmt.Errorf("qrexec: empty service descriptor in %.60q", cmdline)
	}
	if len(desc) > MaxServiceNameLen {
		return Command{}, fmt.Errorf("qrexec: service descriptor is %d bytes, limit is %d", len(desc), MaxServiceNameLen)
	}
	name, arg, _ := strings.Cut(desc, "+")
	if name == "" {
		return Command{}, fmt.Errorf("qrexec: empty service name in %.60q", cmdline)
	}
	if len(name) > maxServiceNameChars {
		return Command{}, fmt.Errorf("qrexec: service name is %d bytes, limit is %d", len(name), maxServiceNameChars)
	}
	source, _, _ := strings.Cut(r, " ")
	if source == "" {
		return Command{}, fmt.Errorf("qrexec: empty source domain in %.60q", cmdline)
	}
	if err := CheckDomainName(source); err != nil {
		return Command{}, fmt.Errorf("qrexec: source of %.60q: %w", cmdline, err)
	}
	c.IsRPC, c.Service, c.Arg, c.Source = true, name, arg, source
	return c, nil
}

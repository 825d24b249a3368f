package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rule option keys and values exactly as dom0 writes them into QubesDB.
const (
	keyAction        = "action"
	keyDst4          = "dst4"
	keyDst6          = "dst6"
	keyDstHost       = "dsthost"
	keyProto         = "proto"
	keySpecialTarget = "specialtarget"
	keyDstPorts      = "dstports"
	keyICMPType      = "icmptype"

	valueAccept = "accept"
	valueDrop   = "drop"
	valueTCP    = "tcp"
	valueUDP    = "udp"
	valueICMP   = "icmp"
	valueDNS    = "dns"
)

// IP protocol numbers the compiled rules compare against (IANA assignments).
const (
	ipProtoICMP   uint8 = 1
	ipProtoTCP    uint8 = 6
	ipProtoUDP    uint8 = 17
	ipProtoICMPv6 uint8 = 58
)

// dnsPort is the port a specialtarget=dns rule is limited to.
const dnsPort uint16 = 53

// Limits on names accepted in dsthost, from the DNS (RFC 1035 section 2.3.4).
const (
	maxHostNameLen  = 253
	maxHostLabelLen = 63
)

// maxQuoted bounds how much of an offending text an error message repeats,
// so that a hostile or corrupted entry cannot flood the log.
const maxQuoted = 80

// Action is what happens to a packet a rule (or the policy) matches. The zero
// value is Drop, so a forgotten initialisation fails closed.
type Action uint8

const (
	// Drop discards the packet.
	Drop Action = iota
	// Accept forwards the packet.
	Accept
)

// String returns the QubesDB spelling of the action.
func (a Action) String() string {
	switch a {
	case Drop:
		return valueDrop
	case Accept:
		return valueAccept
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

func parseAction(v string) (Action, error) {
	switch v {
	case valueAccept:
		return Accept, nil
	case valueDrop:
		return Drop, nil
	}
	return Drop, fmt.Errorf("%s must be %q or %q", keyAction, valueAccept, valueDrop)
}

// Proto is the transport protocol a rule is restricted to. The zero value,
// ProtoAny, places no restriction.
type Proto uint8

const (
	// ProtoAny matches every protocol.
	ProtoAny Proto = iota
	// ProtoTCP matches TCP.
	ProtoTCP
	// ProtoUDP matches UDP.
	ProtoUDP
	// ProtoICMP matches ICMP for IPv4 clients and ICMPv6 for IPv6 clients.
	ProtoICMP
)

// String returns the QubesDB spelling of the protocol ("" for ProtoAny).
func (p Proto) String() string {
	switch p {
	case ProtoAny:
		return ""
	case ProtoTCP:
		return valueTCP
	case ProtoUDP:
		return valueUDP
	case ProtoICMP:
		return valueICMP
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// number returns the IP protocol number of p for a client of the given
// family, or 0 for ProtoAny.
func (p Proto) number(ipv6 bool) uint8 {
	switch p {
	case ProtoTCP:
		return ipProtoTCP
	case ProtoUDP:
		return ipProtoUDP
	case ProtoICMP:
		if ipv6 {
			return ipProtoICMPv6
		}
		return ipProtoICMP
	}
	return 0
}

// SpecialTarget names a destination class defined by Qubes rather than by
// address. The zero value, TargetNone, means no special target.
type SpecialTarget uint8

const (
	// TargetNone means the rule has no specialtarget option.
	TargetNone SpecialTarget = iota
	// TargetDNS restricts the rule to the Qubes virtual DNS servers, port 53.
	TargetDNS
)

// String returns the QubesDB spelling of the target ("" for TargetNone).
func (t SpecialTarget) String() string {
	switch t {
	case TargetNone:
		return ""
	case TargetDNS:
		return valueDNS
	}
	return "specialtarget(" + strconv.Itoa(int(t)) + ")"
}

// PortRange is an inclusive range of destination ports.
type PortRange struct {
	First, Last uint16
}

// String returns the range in dom0's "N-M" form.
func (r PortRange) String() string {
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// Rule is one parsed firewall rule. At most one of Dst and DstHost is set; a
// rule with neither matches every destination.
type Rule struct {
	Action Action
	// Dst is the destination network from dst4 or dst6, masked; the zero
	// Prefix when absent.
	Dst netip.Prefix
	// DstHost is the name from dsthost, resolved at compile time; "" when
	// absent.
	DstHost       string
	Proto         Proto
	SpecialTarget SpecialTarget
	// DstPorts restricts TCP or UDP destination ports; nil for any port.
	DstPorts *PortRange
	// ICMPType restricts the ICMP (or ICMPv6) type; nil for any type.
	ICMPType *uint8
}

// ParseRule parses one rule in the text form dom0 writes to QubesDB. It
// checks everything that does not depend on the client (see ParseRuleSet for
// the address-family checks). Errors name the offending option.
func ParseRule(text string) (Rule, error) {
	r, err := parseRule(text)
	if err != nil {
		return Rule{}, fmt.Errorf("rule %s: %w", quote(text), err)
	}
	return r, nil
}

func parseRule(text string) (Rule, error) {
	var r Rule
	seen := make(map[string]bool, 8)
	haveAction := false
	for _, opt := range strings.FieldsFunc(text, isRuleSpace) {
		key, value, ok := strings.Cut(opt, "=")
		if !ok {
			return Rule{}, fmt.Errorf("option %s is not key=value", quote(opt))
		}
		if seen[key] {
			return Rule{}, fmt.Errorf("option %s given twice", quote(key))
		}
		seen[key] = true
		if err := r.setOption(key, value); err != nil {
			return Rule{}, fmt.Errorf("bad %s: %w", quote(opt), err)
		}
		if key == keyAction {
			haveAction = true
		}
	}
	if !haveAction {
		return Rule{}, errors.New("no action= option")
	}
	if err := r.Validate(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// isRuleSpace reports the separators between options: dom0 writes single
// spaces; tabs and repeated spaces are tolerated as qubes-mirage-firewall does.
func isRuleSpace(c rune) bool { return c == ' ' || c == '\t' }

// setOption parses one key=value pair into r. Conflicts between options are
// left to Validate.
func (r *Rule) setOption(key, value string) error {
	switch key {
	case keyAction:
		a, err := parseAction(value)
		r.Action = a
		return err
	case keyDst4, keyDst6:
		p, err := parseDst(value, key == keyDst6)
		if err != nil {
			return err
		}
		if r.Dst.IsValid() || r.DstHost != "" {
			return errors.New("only one of dst4, dst6 and dsthost may be given")
		}
		r.Dst = p
	case keyDstHost:
		if err := checkHostName(value); err != nil {
			return err
		}
		if r.Dst.IsValid() {
			return errors.New("only one of dst4, dst6 and dsthost may be given")
		}
		r.DstHost = value
	case keyProto:
		switch value {
		case valueTCP:
			r.Proto = ProtoTCP
		case valueUDP:
			r.Proto = ProtoUDP
		case valueICMP:
			r.Proto = ProtoICMP
		default:
			return fmt.Errorf("proto must be %q, %q or %q", valueTCP, valueUDP, valueICMP)
		}
	case keySpecialTarget:
		if value != valueDNS {
			return fmt.Errorf("the only specialtarget is %q", valueDNS)
		}
		r.SpecialTarget = TargetDNS
	case keyDstPorts:
		pr, err := parsePorts(value)
		if err != nil {
			return err
		}
		r.DstPorts = &pr
	case keyICMPType:
		t, err := strconv.ParseUint(value, 10, 8)
		if err != nil {
			return errors.New("icmptype must be a number from 0 to 255")
		}
		r.ICMPType = new(uint8(t))
	default:
		return fmt.Errorf("unknown option (known: %s, %s, %s, %s, %s, %s, %s, %s)",
			keyAction, keyDst4, keyDst6, keyDstHost, keyProto, keySpecialTarget, keyDstPorts, keyICMPType)
	}
	return nil
}

// parseDst parses a dst4 (ipv6 false) or dst6 (ipv6 true) value: an address
// with an optional prefix length.
func parseDst(value string, ipv6 bool) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(value, "/") {
		var err error
		if p, err = netip.ParsePrefix(value); err != nil {
			return netip.Prefix{}, errors.New("not an address/prefix-length")
		}
	} else {
		a, err := netip.ParseAddr(value)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errors.New("not an address")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if ipv6 != p.Addr().Is6() {
		if ipv6 {
			return netip.Prefix{}, errors.New("dst6 needs an IPv6 address")
		}
		return netip.Prefix{}, errors.New("dst4 needs an IPv4 address")
	}
	return p.Masked(), nil
}

// parsePorts parses "N-M" (dom0's form) or "N".
func parsePorts(value string) (PortRange, error) {
	first, last, isRange := strings.Cut(value, "-")
	if !isRange {
		last = first
	}
	lo, err1 := strconv.ParseUint(first, 10, 16)
	hi, err2 := strconv.ParseUint(last, 10, 16)
	if err1 != nil || err2 != nil {
		return PortRange{}, errors.New("dstports must be N-M with ports from 0 to 65535")
	}
	if lo > hi {
		return PortRange{}, fmt.Errorf("first port %d is above last port %d", lo, hi)
	}
	return PortRange{First: uint16(lo), Last: uint16(hi)}, nil
}

// checkHostName accepts what dom0 lets through for dsthost (lowercase
// letters, digits, '-', '_' and '.') and additionally requires DNS lengths
// and no empty label; one trailing dot is allowed.
func checkHostName(name string) error {
	if name == "" || len(name) > maxHostNameLen {
		return fmt.Errorf("host name must be 1 to %d characters", maxHostNameLen)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return errors.New("host name may contain only a-z, 0-9, '-', '_' and '.'")
		}
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > maxHostLabelLen {
			return fmt.Errorf("host name labels must be 1 to %d characters", maxHostLabelLen)
		}
	}
	return nil
}

// Validate checks the constraints between options that dom0 enforces, and the
// ranges of each field, so that a Rule built in code gets the same checks as a
// parsed one.
func (r Rule) Validate() error {
	if r.Action != Accept && r.Action != Drop {
		return fmt.Errorf("invalid action %d", r.Action)
	}
	if r.Proto > ProtoICMP {
		return fmt.Errorf("invalid proto %d", r.Proto)
	}
	if r.SpecialTarget > TargetDNS {
		return fmt.Errorf("invalid specialtarget %d", r.SpecialTarget)
	}
	if r.Dst.IsValid() && r.DstHost != "" {
		return errors.New("only one of dst4, dst6 and dsthost may be given")
	}
	if r.Dst.IsValid() && (r.Dst != r.Dst.Masked() || r.Dst.Addr().Zone() != "") {
		return fmt.Errorf("destination %s is not a plain masked prefix", r.Dst)
	}
	if r.DstHost != "" {
		if err := checkHostName(r.DstHost); err != nil {
			return fmt.Errorf("bad dsthost %s: %w", quote(r.DstHost), err)
		}
	}
	if r.DstPorts != nil {
		if r.Proto != ProtoTCP && r.Proto != ProtoUDP {
			return errors.New("dstports needs proto=tcp or proto=udp")
		}
		if r.DstPorts.First > r.DstPorts.Last {
			return fmt.Errorf("dstports first port %d is above last port %d", r.DstPorts.First, r.DstPorts.Last)
		}
	}
	if r.ICMPType != nil && r.Proto != ProtoICMP {
		return errors.New("icmptype needs proto=icmp")
	}
	if r.SpecialTarget == TargetDNS && r.Proto == ProtoICMP {
		return errors.New("specialtarget=dns needs proto=tcp, proto=udp or no proto")
	}
	return nil
}

// String returns the rule in dom0's canonical text form, which ParseRule
// reads back to an equal Rule.
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(keyAction + "=" + r.Action.String())
	switch {
	case r.Dst.IsValid() && r.Dst.Addr().Is4():
		b.WriteString(" " + keyDst4 + "=" + r.Dst.String())
	case r.Dst.IsValid():
		b.WriteString(" " + keyDst6 + "=" + r.Dst.String())
	case r.DstHost != "":
		b.WriteString(" " + keyDstHost + "=" + r.DstHost)
	}
	if r.Proto != ProtoAny {
		b.WriteString(" " + keyProto + "=" + r.Proto.String())
	}
	if r.SpecialTarget != TargetNone {
		b.WriteString(" " + keySpecialTarget + "=" + r.SpecialTarget.String())
	}
	if r.DstPorts != nil {
		b.WriteString(" " + keyDstPorts + "=" + r.DstPorts.String())
	}
	if r.ICMPType != nil {
		b.WriteString(" " + keyICMPType + "=" + strconv.Itoa(int(*r.ICMPType)))
	}
	return b.String()
}

// quote renders untrusted text for an error message: Go-quoted (so control
// characters and newlines cannot break the log line) and cut to maxQuoted
// bytes.
func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// QubesDB layout of a client's rule set.
const (
	// DBDir is the QubesDB directory holding one sub-directory per client IP.
	DBDir = "/qubes-firewall/"
	// policyKey names the entry holding the default action.
	policyKey = "policy"
	// minRuleKeyLen is the width dom0 pads rule numbers to ("{:04}").
	minRuleKeyLen = 4
	// maxRuleKeyLen bounds rule numbers to what fits an int32 comfortably.
	maxRuleKeyLen = 9
)

// NumberedRule is a rule with the number of the QubesDB entry it came from,
// kept so that logs and errors can point at the rule dom0 wrote.
type NumberedRule struct {
	Number int
	Rule
}

// RuleSet is the complete, ordered rule set of one client.
type RuleSet struct {
	// Client is the client VM's address, the source the rules apply to.
	Client netip.Addr
	// Rules in ascending number order; the first match decides.
	Rules []NumberedRule
	// Policy is the action when no rule matches.
	Policy Action
}

// DenyAll returns the rule set that drops everything from client, used in
// place of a rule set that failed to parse.
func DenyAll(client netip.Addr) *RuleSet {
	return &RuleSet{Client: client, Policy: Drop}
}

// EntryError describes one QubesDB entry of a rule set that could not be
// used.
type EntryError struct {
	// Key is the entry name relative to the client's directory ("0003",
	// "policy"), or the full key when it lies outside that directory.
	Key string
	// Text is the entry's value.
	Text string
	// Reason says what is wrong.
	Reason string
}

func (e EntryError) String() string {
	if e.Text == "" {
		return fmt.Sprintf("entry %s: %s", quote(e.Key), e.Reason)
	}
	return fmt.Sprintf("entry %s = %s: %s", quote(e.Key), quote(e.Text), e.Reason)
}

// RuleSetError reports why a client's rule set was replaced by deny-all.
// Entries lists every bad entry in key order.
type RuleSetError struct {
	Client  netip.Addr
	Entries []EntryError
}

func (e *RuleSetError) Error() string {
	more := ""
	if n := len(e.Entries) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more bad entries)", n)
	}
	first := "no entries"
	if len(e.Entries) > 0 {
		first = e.Entries[0].String()
	}
	return fmt.Sprintf("firewall rules for client %s: %s%s; all traffic from this client is dropped until dom0 writes a valid rule set",
		addrText(e.Client), first, more)
}

// ParseRuleSet parses the QubesDB entries of one client's rule set. Keys may
// be full paths (/qubes-firewall/<client>/0003, as a QubesDB multiread
// returns them) or names relative to the client's directory ("0003",
// "policy"); the empty commit marker /qubes-firewall/<client> is ignored.
//
// Rule numbers may have gaps; rules are ordered numerically. If any entry is
// bad or the policy is missing, the result is DenyAll(clientIP) together with
// a *RuleSetError naming every bad entry: never a partial rule set.
func ParseRuleSet(clientIP netip.Addr, entries map[string]string) (*RuleSet, error) {
	fail := func(problems []EntryError) (*RuleSet, error) {
		return DenyAll(clientIP), &RuleSetError{Client: clientIP, Entries: problems}
	}
	if !clientIP.IsValid() || clientIP.Zone() != "" {
		return fail([]EntryError{{Key: DBDir, Reason: "client address is not a plain IP address"}})
	}

	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	set := &RuleSet{Client: clientIP}
	var problems []EntryError
	havePolicy := false
	numbers := make(map[int]string, len(entries))
	for _, key := range keys {
		text := entries[key]
		name, ok := entryName(clientIP, key)
		switch {
		case !ok:
			problems = append(problems, EntryError{Key: key, Text: text,
				Reason: fmt.Sprintf("key is not in %s%s/", DBDir, clientIP)})
		case name == "":
			// The commit marker: its write is the signal, not data.
		case name == policyKey:
			a, err := parseAction(text)
			if err != nil {
				problems = append(problems, EntryError{Key: name, Text: text,
					Reason: fmt.Sprintf("policy must be %q or %q", valueAccept, valueDrop)})
				continue
			}
			set.Policy, havePolicy = a, true
		default:
			n, ok := ruleNumber(name)
			if !ok {
				problems = append(problems, EntryError{Key: name, Text: text,
					Reason: fmt.Sprintf("not a rule number (%d to %d digits) nor %q", minRuleKeyLen, maxRuleKeyLen, policyKey)})
				continue
			}
			if other, dup := numbers[n]; dup {
				problems = append(problems, EntryError{Key: name, Text: text,
					Reason: fmt.Sprintf("same rule number as entry %s", quote(other))})
				continue
			}
			numbers[n] = name
			r, err := parseRule(text)
			if err == nil {
				err = checkFamily(r, clientIP)
			}
			if err != nil {
				problems = append(problems, EntryError{Key: name, Text: text, Reason: err.Error()})
				continue
			}
			set.Rules = append(set.Rules, NumberedRule{Number: n, Rule: r})
		}
	}
	if !havePolicy && !hasKey(problems, policyKey) {
		problems = append(problems, EntryError{Key: policyKey, Reason: "missing (it must be accept or drop)"})
	}
	if len(problems) > 0 {
		return fail(problems)
	}
	slices.SortFunc(set.Rules, func(a, b NumberedRule) int { return cmp.Compare(a.Number, b.Number) })
	return set, nil
}

func hasKey(problems []EntryError, key string) bool {
	return slices.ContainsFunc(problems, func(e EntryError) bool { return e.Key == key })
}

// ParseKey splits a QubesDB key under DBDir into the client address and the
// entry name: "" for the client's commit marker /qubes-firewall/<client>
// (whose write means "rule set complete, apply it", the key a firewall
// watches for), "0003" or "policy" for /qubes-firewall/<client>/0003 and
// /qubes-firewall/<client>/policy. ok is false for keys outside DBDir, with a
// bad address, or nested deeper.
func ParseKey(key string) (client netip.Addr, name string, ok bool) {
	rest, ok := strings.CutPrefix(key, DBDir)
	if !ok {
		return netip.Addr{}, "", false
	}
	ipText, name, _ := strings.Cut(rest, "/")
	client, err := netip.ParseAddr(ipText)
	if err != nil || client.Zone() != "" || strings.Contains(name, "/") {
		return netip.Addr{}, "", false
	}
	return client, name, true
}

// entryName returns the entry name of key within client's directory (see
// ParseKey); a key without a leading '/' is taken as already relative.
func entryName(client netip.Addr, key string) (name string, ok bool) {
	if !strings.HasPrefix(key, "/") {
		return key, key != "" && !strings.Contains(key, "/")
	}
	keyClient, name, ok := ParseKey(key)
	return name, ok && keyClient == client
}

// ruleNumber parses a rule entry name: decimal digits, at least as wide as
// dom0 pads them.
func ruleNumber(name string) (int, bool) {
	if len(name) < minRuleKeyLen || len(name) > maxRuleKeyLen {
		return 0, false
	}
	for _, c := range []byte(name) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(name)
	return n, err == nil
}

// checkFamily rejects destinations of the other address family than the
// client's, as the Linux agent does.
func checkFamily(r Rule, client netip.Addr) error {
	if r.Dst.IsValid() && r.Dst.Addr().Is4() != client.Is4() {
		if client.Is4() {
			return fmt.Errorf("%s rule for IPv4 client", keyDst6)
		}
		return fmt.Errorf("%s rule for IPv6 client", keyDst4)
	}
	return nil
}

// Validate checks a rule set built in code the way ParseRuleSet checks parsed
// ones: a client address, valid rules of the client's family, strictly
// increasing numbers.
func (s *RuleSet) Validate() error {
	if s == nil {
		return fmt.Errorf("nil rule set")
	}
	if !s.Client.IsValid() || s.Client.Zone() != "" {
		return fmt.Errorf("rule set client %s is not a plain IP address", addrText(s.Client))
	}
	if s.Policy != Accept && s.Policy != Drop {
		return fmt.Errorf("rule set for %s: invalid policy %d", s.Client, s.Policy)
	}
	for i, r := range s.Rules {
		if i > 0 && r.Number <= s.Rules[i-1].Number {
			return fmt.Errorf("rule set for %s: rule %d after rule %d: numbers must increase", s.Client, r.Number, s.Rules[i-1].Number)
		}
		err := r.Validate()
		if err == nil {
			err = checkFamily(r.Rule, s.Client)
		}
		if err != nil {
			return fmt.Errorf("rule set for %s: rule %d %s: %w", s.Client, r.Number, quote(r.String()), err)
		}
	}
	return nil
}

// addrText renders a client address for a message; an address with a zone
// (which can hold any text) is quoted like other untrusted text.
func addrText(a netip.Addr) string {
	if a.Zone() != "" {
		return quote(a.String())
	}
	return a.String()
}

// Package firewall parses the per-client firewall rules that dom0 writes into
// QubesDB and compiles them into an immutable matcher that decides, per
// packet, whether a client VM may reach a destination.
//
// # Where the rules come from
//
// For every client VM behind a firewall VM, dom0 writes one entry per rule
// under /qubes-firewall/<client-ip>/, named by a zero-padded rule number
// ("0000", "0001", ...), plus a "policy" entry holding the action taken when
// no rule matches. An empty write to /qubes-firewall/<client-ip> marks the
// set complete. Numbers can have gaps (dom0 skips expired rules and rules of
// the other address family), so every entry is read and the rules are ordered
// by number; the first rule that matches decides.
//
// A rule is a space-separated list of key=value options:
//
//	action=accept|drop [dst4=A.B.C.D/N | dst6=X::Y/N | dsthost=NAME]
//	[proto=tcp|udp|icmp] [specialtarget=dns] [dstports=N-M] [icmptype=N]
//
// # How this package reads them, and why
//
// The reference is the Linux agent (qubesagent/firewall.py in
// qubes-core-agent-linux, nftables back end) together with the validation dom0
// itself applies before writing (qubes/firewall.py in qubes-core-admin):
//
//   - Options may appear in any order (the Linux agent builds a dictionary);
//     a repeated option is an error here, where Linux silently keeps the last.
//   - Only the eight options above exist. dom0 keeps expire= and comment= to
//     itself (it never writes them to QubesDB and drops expired rules), and
//     the Linux agent rejects them as unsupported, so they are unknown keys
//     here too. So is the legacy dpi= that qubes-mirage-firewall tolerates.
//   - dstports requires proto=tcp or proto=udp and icmptype requires
//     proto=icmp, as dom0 enforces (the Linux agent would apply a bare
//     dstports to both TCP and UDP, but dom0 never writes one). A single port
//     "N" is accepted as "N-N".
//   - dst4 for an IPv6 client and dst6 for an IPv4 client are errors (the
//     Linux agent refuses them the same way). proto=icmp means ICMPv6 for an
//     IPv6 client, as in the Linux agent.
//   - A prefix with host bits set (dst4=10.1.2.3/8) is accepted and masked,
//     as iptables does. A bare address means a single host (/32 or /128).
//   - specialtarget=dns restricts the rule to the DNS servers the firewall VM
//     is given (Options.DNS; by default the Qubes virtual servers 10.139.1.1
//     and 10.139.1.2) of the client's family, on port 53, TCP or UDP. With no
//     server of that family (released Qubes has no IPv6 virtual DNS) the rule
//     matches nothing. A dst4/dst6 or dsthost in the same rule narrows it
//     further. As in the Linux agent, a
//     specialtarget=dns rule whose dstports is anything but 53 matches
//     nothing. specialtarget=dns with proto=icmp is an error (the nftables
//     agent fails to apply it and blocks the client).
//   - dsthost names are kept as written and resolved by Compile through a
//     caller-supplied Resolver, once per compilation, for the client's address
//     family, as the Linux agent resolves once when it applies the rules. A name
//     that does not resolve in a drop rule makes the whole client deny-all, as
//     the Linux agent blocks the client (traffic the rule was meant to stop
//     must not fall through to later accept rules); in an accept rule it only
//     makes that rule match nothing. Either way Matcher.Problems reports it.
//
// A rule set with any bad entry (or without a policy) is replaced by a
// deny-all set for that client, and the error describing every bad entry is
// returned for the caller to report: a broken rule must never widen access
// and never crash the firewall.
//
// # Matching
//
// Compile turns the rule sets of all clients into a Matcher: a hash map from
// client address to that client's compiled rules (precomputed 128-bit masks,
// port ranges, protocol numbers), so the cost of Match depends only on the
// rules of the sending client, never on how many clients exist, and Match
// does not allocate. A Matcher is never modified; updates build a new one
// (With, Without) and publish it through Active, whose readers never lock.
// A packet from an address with no rule set is dropped.
package firewall

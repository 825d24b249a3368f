package nat

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/unikgo/unikgo/services/packet"
)

// Defaults applied to zero Config fields.
const (
	DefaultPortMin = 1024
	DefaultPortMax = 65535

	// MaxPortProbes bounds the search for a free outside port, so a nearly
	// full port range costs at most this many lookups per new flow.
	MaxPortProbes = 512

	// maxFlowsLimit keeps flow indices in int32.
	maxFlowsLimit = 1 << 30
)

// Timeouts are idle timeouts per flow state. Zero fields take the defaults
// in DefaultTimeouts.
type Timeouts struct {
	TCPSyn         time.Duration // handshake not yet answered
	TCPEstablished time.Duration // answered, no FIN/RST seen
	TCPFin         time.Duration // FIN seen in either direction
	TCPRst         time.Duration // RST seen
	UDP            time.Duration // no reply seen yet
	UDPReplied     time.Duration // replies seen
	ICMP           time.Duration // echo identifier mapping
}

// DefaultTimeouts follow RFC 5382 (established TCP at least 2 h 4 min,
// transitory states at least 4 min), Linux conntrack (RST 10 s, unreplied
// UDP 30 s, ICMP 30 s) and RFC 4787 (UDP with traffic both ways at least 2 min).
var DefaultTimeouts = Timeouts{
	TCPSyn:         4 * time.Minute,
	TCPEstablished: 2*time.Hour + 4*time.Minute,
	TCPFin:         4 * time.Minute,
	TCPRst:         10 * time.Second,
	UDP:            30 * time.Second,
	UDPReplied:     3 * time.Minute,
	ICMP:           30 * time.Second,
}

// Config configures a Table.
type Config struct {
	// MaxFlows is the hard bound on tracked flows (required).
	MaxFlows int

	// PublicIPv4 and PublicIPv6 are the FirewallVM's upstream addresses;
	// at least one must be set. Packets of a family without one are dropped.
	PublicIPv4 netip.Addr
	PublicIPv6 netip.Addr

	// PortMin and PortMax bound the outside ports (and ICMP echo
	// identifiers) the table allocates; zero means DefaultPortMin/Max.
	PortMin, PortMax uint16

	Timeouts Timeouts

	// Rand supplies port choices and the hash seed. A seeded source makes
	// the table fully deterministic; nil means a ChaCha8 source seeded from
	// the runtime's random generator.
	Rand rand.Source

	// Admit decides whether an outbound packet may open a new flow (the
	// firewall rule check). It is called only for packets that match no
	// flow, must not keep p, and may be nil to admit everything.
	Admit func(p *packet.Packet) bool
}

func (c *Config) validate() error {
	if c.MaxFlows < 1 || c.MaxFlows > maxFlowsLimit {
		return fmt.Errorf("nat: MaxFlows %d outside 1..%d; set Config.MaxFlows", c.MaxFlows, maxFlowsLimit)
	}
	if !c.PublicIPv4.IsValid() && !c.PublicIPv6.IsValid() {
		return errors.New("nat: no public address; set Config.PublicIPv4 or PublicIPv6")
	}
	if c.PublicIPv4.IsValid() && !c.PublicIPv4.Unmap().Is4() {
		return fmt.Errorf("nat: PublicIPv4 %v is not an IPv4 address", c.PublicIPv4)
	}
	if c.PublicIPv6.IsValid() && (!c.PublicIPv6.Is6() || c.PublicIPv6.Is4In6()) {
		return fmt.Errorf("nat: PublicIPv6 %v is not an IPv6 address", c.PublicIPv6)
	}
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = DefaultPortMin, DefaultPortMax
	}
	if c.PortMin == 0 || c.PortMin > c.PortMax {
		return fmt.Errorf("nat: port range %d-%d is empty or includes 0; fix Config.PortMin/PortMax", c.PortMin, c.PortMax)
	}
	d, t := DefaultTimeouts, &c.Timeouts
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&t.TCPSyn, d.TCPSyn}, {&t.TCPEstablished, d.TCPEstablished}, {&t.TCPFin, d.TCPFin},
		{&t.TCPRst, d.TCPRst}, {&t.UDP, d.UDP}, {&t.UDPReplied, d.UDPReplied}, {&t.ICMP, d.ICMP},
	} {
		if *f.v < 0 {
			return fmt.Errorf("nat: negative timeout %v; use a positive duration or zero for the default", *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.Rand == nil {
		c.Rand = rand.NewChaCha8(seed())
	}
	return nil
}

func seed() (s [32]byte) {
	for i := 0; i < len(s); i += 8 {
		v := rand.Uint64() // runtime-seeded, unpredictable across boots
		for j := 0; j < 8; j++ {
			s[i+j] = byte(v >> (8 * j))
		}
	}
	return s
}

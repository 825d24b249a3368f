package kernel

import (
	"testing"

	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/netstack/socket"
	"golang.org/x/sys/unix"
)

// TestCheckSocketMatchesServer: the kernel answers socket(2) before the
// server makes the socket, so its argument checks must agree with
// netstack/socket's: same success, same errno.
func TestCheckSocketMatchesServer(t *testing.T) {
	st, err := netstack.New(netstack.Config{NoSLAAC: true, NoDAD: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ss := socket.New(st)
	domains := []int{unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK, unix.AF_UNIX, unix.AF_PACKET, 0, 99}
	types := []int{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_RAW, unix.SOCK_SEQPACKET, unix.SOCK_PACKET, 0, 11,
		unix.SOCK_STREAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC, unix.SOCK_DGRAM | 0x100}
	protos := []int{0, unix.IPPROTO_ICMP, unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_ICMPV6, unix.IPPROTO_RAW, 1000}
	for _, d := range domains {
		for _, ty := range types {
			for _, p := range protos {
				s, e := ss.Socket(d, ty, p)
				if s != nil {
					s.Close(t.Context())
				}
				if k := checkSocket(int32(d), int32(ty), int32(p)); k != e {
					t.Errorf("socket(%d, %#x, %d): kernel says %v, server %v", d, ty, p, k, e)
				}
			}
		}
	}
}

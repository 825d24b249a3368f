// Package netstack runs gVisor's TCP/IP stack over netdev.NIC devices
// plus a loopback interface: IPv4 with ARP, IPv6 with NDP (and optionally
// SLAAC and router discovery), TCP, UDP and ICMP echo. Interfaces are
// numbered as Linux numbers them (lo is 1, the NICs 2, 3...), so that the
// ifindexes of netlink and IPv6 scope ids agree.
//
// Package netstack/socket puts Linux's socket system calls on top of a
// Stack; netstack/nictest joins two stacks by an in-memory cable for
// tests.
package netstack

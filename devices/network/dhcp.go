package network

import (
	"context"
	"time"

	"github.com/unikgo/unikgo/netstack"
	"github.com/unikgo/unikgo/netstack/dhcp"
)

// dhcpWait bounds the wait for the first lease before main starts, as
// Linux's ip=dhcp waits for one; the client keeps trying afterwards.
const dhcpWait = 15 * time.Second

// startDHCP gets eth0's first lease, waiting up to dhcpWait, and keeps it
// renewed in the background.
func startDHCP(st *netstack.Stack, cfg Config) {
	c, err := dhcp.New(st, Eth0, dhcp.Config{Hostname: cfg.Hostname})
	if err != nil {
		warn("DHCP on eth0: %v; no IPv4 address", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dhcpWait)
	_, err = c.Acquire(ctx)
	cancel()
	if err != nil {
		warn("DHCP on eth0: no lease within %v (%v); still asking in the background", dhcpWait, err)
	}
	go func() {
		if err := c.Run(context.Background()); err != nil {
			warn("DHCP on eth0 stopped: %v", err)
		}
	}()
}

package domain

import (
	"context"
	"fmt"
)

// ShutdownRequest is what the toolstack asked for through control/shutdown.
type ShutdownRequest string

// Requests xl writes (tools/libs/light: libxl_domain_shutdown/reboot).
const (
	Poweroff ShutdownRequest = "poweroff"
	Halt     ShutdownRequest = "halt"
	Reboot   ShutdownRequest = "reboot"
	Suspend  ShutdownRequest = "suspend"
)

// WatchShutdown advertises the PV control interface (control/feature-*)
// so that `xl shutdown` and `xl reboot` use it, then calls fn for each
// request written to control/shutdown, after acknowledging it by clearing
// the key as Linux guests do. It returns when ctx is done or xenstore
// fails.
func WatchShutdown(ctx context.Context, fn func(ShutdownRequest)) error {
	c, err := Xenstore()
	if err != nil {
		return err
	}
	for _, k := range []string{"control/feature-poweroff", "control/feature-reboot"} {
		if err := c.Write(ctx, k, "1"); err != nil {
			return fmt.Errorf("domain: advertising %s: %w", k, err)
		}
	}
	w, err := c.Watch(ctx, "control/shutdown", "unikgo-shutdown")
	if err != nil {
		return fmt.Errorf("domain: watching control/shutdown: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Done():
			return c.Err()
		case _, ok := <-w.Events():
			if !ok {
				return c.Err()
			}
			v, err := c.Read(ctx, "control/shutdown")
			if err != nil || v == "" {
				continue // removed, or our own acknowledgement
			}
			if err := c.Write(ctx, "control/shutdown", ""); err != nil {
				return fmt.Errorf("domain: acknowledging shutdown request %q: %w", v, err)
			}
			fn(ShutdownRequest(v))
		}
	}
}

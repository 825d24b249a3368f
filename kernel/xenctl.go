package kernel

import (
	"context"
	"os"
	"syscall"
	"time"

	"github.com/unikgo/unikgo/xenpv"
	"github.com/unikgo/unikgo/xenpv/domain"
)

// Shutdown requests from the toolstack (`xl shutdown`, `xl reboot`)
// arrive in xenstore's control/shutdown. The program gets SIGTERM, the
// signal a Linux service gets from its init: with signal.Notify it can
// finish its work and exit; without, Go's default action ends it. Either
// way the domain then shuts down with the reason the toolstack asked for.
// A program that ignores the request is stopped after shutdownGrace.

const shutdownGrace = 10 * time.Second

// requestedShutdown is the Xen shutdown reason asked for, or -1. It is a
// plain integer: the kernel reads it in trap context.
var requestedShutdown int32 = -1

// requestedAt is the guest time (nanotime) of the request.
var requestedAt uint64

func watchXenControl() {
	err := domain.WatchShutdown(context.Background(), func(r domain.ShutdownRequest) {
		reason := int32(xenpv.ShutdownPoweroff)
		switch r {
		case domain.Reboot:
			reason = xenpv.ShutdownReboot
		case domain.Poweroff, domain.Halt:
		default:
			os.Stderr.WriteString("unikgo: ignoring unsupported shutdown request \"" + string(r) + "\"\n")
			return
		}
		requestedAt = nanotime()
		requestedShutdown = reason
		os.Stderr.WriteString("unikgo: " + string(r) + " requested by the toolstack: sending SIGTERM\n")
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.AfterFunc(shutdownGrace, func() {
			os.Stderr.WriteString("unikgo: program still running " + shutdownGrace.String() + " after SIGTERM: stopping it\n")
			os.Exit(0)
		})
	})
	if err != nil {
		os.Stderr.WriteString("unikgo: xen control interface unavailable, xl shutdown will not reach this program: " + err.Error() + "\n")
	}
}

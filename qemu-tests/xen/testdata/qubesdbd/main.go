// Command qubesdbd is the dom0 side of QubesDB for the Xen lab: a
// services/qubesdb Server for one VM, reached through dom0's real
// libxenvchan by running
//
//	vchan-socket-proxy -m server VM /local/domain/0/data/vchan/VM/111 SOCKET
//
// which connects to SOCKET whenever the VM attaches. Initial entries come
// from -set; the control FIFO takes "write KEY VALUE", "rm PATH" and
// "quit" lines, so a test can change the database while the VM watches.
// Every change, the VM's own writes included, is printed on stdout.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/unikgo/unikgo/services/qubesdb"
)

func main() {
	sock := pflag.String("socket", "/tmp/qubesdb.sock", "Unix socket vchan-socket-proxy connects to")
	ctl := pflag.String("control", "/tmp/qubesdb.ctl", "control FIFO (created if missing)")
	set := pflag.StringArray("set", nil, "initial entry KEY=VALUE (repeatable)")
	pflag.Parse()
	if err := run(*sock, *ctl, *set); err != nil {
		fmt.Fprintln(os.Stderr, "qubesdbd:", err)
		os.Exit(1)
	}
}

func run(sock, ctl string, set []string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := qubesdb.NewServer(qubesdb.Options{})
	for _, kv := range set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-set %q: want KEY=VALUE", kv)
		}
		if err := srv.Write(ctx, k, v); err != nil {
			return err
		}
	}
	w, err := srv.Watch("/")
	if err != nil {
		return err
	}
	go func() {
		for e := range w.C {
			switch {
			case e.Lost:
				fmt.Println("event lost")
			case e.Removed:
				fmt.Printf("event rm %s\n", e.Path)
			default:
				fmt.Printf("event write %s = %s\n", e.Path, e.Value)
			}
		}
	}()

	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Println("vm connected")
			err = srv.Serve(ctx, c)
			fmt.Printf("vm disconnected: %v\n", err)
		}
	}()

	if err := mkfifo(ctl); err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		f, err := os.Open(ctl) // blocks until a writer comes
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.SplitN(sc.Text(), " ", 3)
			switch {
			case fields[0] == "quit":
				f.Close()
				return nil
			case fields[0] == "write" && len(fields) == 3:
				err = srv.Write(ctx, fields[1], fields[2])
			case fields[0] == "rm" && len(fields) == 2:
				err = srv.Rm(ctx, fields[1])
			default:
				err = errors.New("unknown command")
			}
			fmt.Printf("%s: %v\n", sc.Text(), errOK(err))
		}
		f.Close()
	}
}

func errOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

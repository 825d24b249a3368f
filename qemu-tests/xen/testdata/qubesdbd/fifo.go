package main

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

func mkfifo(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&fs.ModeNamedPipe != 0 {
		return nil
	}
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

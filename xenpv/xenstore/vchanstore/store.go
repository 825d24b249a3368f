// Package vchanstore lets package vchan publish and find its rendezvous
// keys in the real xenstore: it implements vchan.Store on a
// xenstore.Client. It lives apart from package xenstore so that the
// client does not depend on vchan.
package vchanstore

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/unikgo/unikgo/xenpv/vchan"
	"github.com/unikgo/unikgo/xenpv/xenstore"
)

// DefaultTimeout bounds the vchan.Store calls that take no context.
const DefaultTimeout = 30 * time.Second

// Store is vchan.Store over xenstore for the domain Self.
type Store struct {
	c       *xenstore.Client
	self    vchan.DomID
	Timeout time.Duration // for DomainPath, Publish, Unpublish; DefaultTimeout if 0
}

var _ vchan.Store = (*Store)(nil)

// New returns a Store for domain self talking through c.
func New(c *xenstore.Client, self vchan.DomID) *Store {
	return &Store{c: c, self: self}
}

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	t := s.Timeout
	if t == 0 {
		t = DefaultTimeout
	}
	return context.WithTimeout(context.Background(), t)
}

// DomainPath asks xenstored for dom's home.
func (s *Store) DomainPath(dom vchan.DomID) (string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.c.GetDomainPath(ctx, xenstore.DomID(dom))
}

// Publish writes the entries in one transaction, each owned by this
// domain with no access for others except read access for reader.
func (s *Store) Publish(entries []vchan.Entry, reader vchan.DomID) error {
	ctx, cancel := s.ctx()
	defer cancel()
	perms := []xenstore.Perm{
		{Dom: xenstore.DomID(s.self), Access: xenstore.AccessNone},
		{Dom: xenstore.DomID(reader), Access: xenstore.AccessRead},
	}
	return s.c.Transaction(ctx, func(tx *xenstore.Tx) error {
		for _, e := range entries {
			if err := tx.Write(ctx, e.Path, e.Value); err != nil {
				return err
			}
			if err := tx.SetPerms(ctx, e.Path, perms); err != nil {
				return err
			}
		}
		return nil
	})
}

// WaitRead returns the value at path once it exists and is readable,
// watching it in the meantime.
func (s *Store) WaitRead(ctx context.Context, path string) (string, error) {
	w, err := s.c.Watch(ctx, path, "")
	if err != nil {
		return "", err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s.c.Unwatch(uctx, w)
	}()
	for {
		v, err := s.c.Read(ctx, path)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EACCES) {
			return "", err
		}
		select {
		case _, ok := <-w.Events():
			if !ok {
				if err := s.c.Err(); err != nil {
					return "", err
				}
				return "", xenstore.ErrClosed
			}
		case <-ctx.Done():
			return "", fmt.Errorf("vchanstore: waiting for %s: %w", path, ctx.Err())
		}
	}
}

// Unpublish removes dir and everything below it, then dir's parent if
// that left it empty, in one transaction. A missing dir is fine.
func (s *Store) Unpublish(dir string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	parent := dir
	for i := len(dir) - 1; i > 0; i-- {
		if dir[i] == '/' {
			parent = dir[:i]
			break
		}
	}
	return s.c.Transaction(ctx, func(tx *xenstore.Tx) error {
		if err := tx.Rm(ctx, dir); err != nil && !errors.Is(err, syscall.ENOENT) {
			return err
		}
		if parent == dir {
			return nil
		}
		names, err := tx.Directory(ctx, parent)
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return tx.Rm(ctx, parent)
		}
		return nil
	})
}

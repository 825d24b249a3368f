// Package xenstoretest provides an in-process xenstored for tests: a small
// tree, watches that fire as xenstored's do, transactions with conflict
// detection, and connections over any byte stream or over a simulated
// shared ring page, speaking the real wire protocol.
//
// It is a fake, not a xenstored: permissions are stored and returned but
// not enforced, there are no quotas, and a transaction conflicts with any
// change committed after it started (which is what xenstore.txt promises
// and what the C xenstored did for years).
package xenstoretest

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/unikgo/unikgo/xenpv/xenstore"
)

type node struct {
	value string
	perms []xenstore.Perm
}

// tree maps absolute paths to nodes; "/" always exists.
type tree map[string]*node

func (t tree) clone() tree {
	c := make(tree, len(t))
	for k, v := range t {
		n := *v
		c[k] = &n
	}
	return c
}

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// isChild reports whether p is c or below it (xenstore.txt's "child").
func isChild(p, c string) bool {
	return p == c || c == "/" || strings.HasPrefix(p, c+"/")
}

func (t tree) children(p string) []string {
	var names []string
	prefix := p + "/"
	if p == "/" {
		prefix = "/"
	}
	for k := range t {
		if k != "/" && strings.HasPrefix(k, prefix) && !strings.Contains(k[len(prefix):], "/") {
			names = append(names, k[len(prefix):])
		}
	}
	slices.Sort(names)
	return names
}

// create makes p and its missing parents; it returns whether p was new.
func (t tree) create(p string, owner xenstore.DomID) bool {
	if t[p] != nil {
		return false
	}
	if p != "/" {
		t.create(parent(p), owner)
	}
	perms := []xenstore.Perm{{Dom: owner, Access: xenstore.AccessNone}}
	if par := t[parent(p)]; par != nil && p != "/" {
		perms = slices.Clone(par.perms)
	}
	t[p] = &node{perms: perms}
	return true
}

func (t tree) remove(p string) {
	for k := range t {
		if isChild(k, p) {
			delete(t, k)
		}
	}
}

type transaction struct {
	conn     *conn
	store    tree
	startGen uint64
	changes  []change
}

type change struct {
	path    string
	removed bool
}

// Server is a fake xenstored. The zero value is not usable; call NewServer.
type Server struct {
	mu      sync.Mutex
	store   tree
	gen     uint64 // bumped by every committed change
	nextTx  uint32
	txs     map[uint32]*transaction
	conns   map[*conn]bool
	force   int // commits still to fail with EAGAIN
	commits int
}

// NewServer returns a server with "/" and /local/domain.
func NewServer() *Server {
	s := &Server{store: tree{}, txs: map[uint32]*transaction{}, conns: map[*conn]bool{}, nextTx: 1}
	s.store.create("/local/domain", 0)
	return s
}

// ForceConflicts makes the next n transaction commits fail with EAGAIN,
// as if another domain had raced them.
func (s *Server) ForceConflicts(n int) {
	s.mu.Lock()
	s.force = n
	s.mu.Unlock()
}

// Commits returns how many transaction commits were attempted.
func (s *Server) Commits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits
}

// OpenTransactions returns how many transactions are open.
func (s *Server) OpenTransactions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.txs)
}

// Watches returns how many watches are registered over all connections.
func (s *Server) Watches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		n += len(c.watches)
	}
	return n
}

// Set writes a node directly (as the toolstack would), firing watches.
func (s *Server) Set(path, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store.create(path, 0)
	s.store[path].value = value
	s.gen++
	s.fire(change{path: path})
}

// Get reads a node directly.
func (s *Server) Get(path string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.store[path]
	if n == nil {
		return "", false
	}
	return n.value, true
}

// Remove deletes a node and its children directly, firing watches.
func (s *Server) Remove(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store[path] == nil {
		return
	}
	s.store.remove(path)
	s.gen++
	s.fire(change{path: path, removed: true})
}

// FireSpecial fires the special watches on name (@introduceDomain,
// @releaseDomain).
func (s *Server) FireSpecial(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fire(change{path: name})
}

type watch struct {
	path     string // absolute, or @special
	token    string
	relative bool
}

type conn struct {
	s    *Server
	rw   io.ReadWriteCloser
	dom  xenstore.DomID
	home string

	outMu  sync.Mutex
	outQ   [][]byte
	outC   *sync.Cond
	closed bool

	watches []watch // guarded by s.mu
}

// Serve speaks the xenstore protocol on rw as seen by domain dom (whose
// home resolves relative paths) until rw fails or sends a message
// xenstored would kill the connection for. It closes rw on return.
func (s *Server) Serve(rw io.ReadWriteCloser, dom xenstore.DomID) error {
	c := &conn{s: s, rw: rw, dom: dom, home: xenstore.HomePath(dom)}
	c.outC = sync.NewCond(&c.outMu)
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
	writerDone := make(chan struct{})
	go c.writer(writerDone)
	err := c.readLoop()
	s.mu.Lock()
	delete(s.conns, c)
	for id, tx := range s.txs {
		if tx.conn == c {
			delete(s.txs, id)
		}
	}
	s.mu.Unlock()
	c.outMu.Lock()
	c.closed = true
	c.outC.Broadcast()
	c.outMu.Unlock()
	<-writerDone
	rw.Close()
	return err
}

func (c *conn) writer(done chan struct{}) {
	defer close(done)
	for {
		c.outMu.Lock()
		for len(c.outQ) == 0 && !c.closed {
			c.outC.Wait()
		}
		if len(c.outQ) == 0 {
			c.outMu.Unlock()
			return
		}
		m := c.outQ[0]
		c.outQ = c.outQ[1:]
		c.outMu.Unlock()
		if _, err := c.rw.Write(m); err != nil {
			c.rw.Close()
			return
		}
	}
}

func (c *conn) send(t xenstore.MsgType, reqID, txID uint32, payload []byte) {
	m, err := xenstore.MarshalMessage(t, reqID, txID, payload)
	if err != nil {
		m, _ = xenstore.MarshalMessage(xenstore.TypeError, reqID, txID, []byte("E2BIG\x00"))
	}
	c.outMu.Lock()
	if !c.closed {
		c.outQ = append(c.outQ, m)
		c.outC.Signal()
	}
	c.outMu.Unlock()
}

func (c *conn) readLoop() error {
	for {
		m, err := xenstore.ReadMessage(c.rw)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		c.s.mu.Lock()
		reply, errName := c.handle(m)
		c.s.mu.Unlock()
		switch errName {
		case alreadyReplied:
		case "":
			c.send(m.Type, m.ReqID, m.TxID, reply)
		default:
			c.send(xenstore.TypeError, m.ReqID, m.TxID, []byte(errName+"\x00"))
		}
	}
}

var ok = []byte("OK\x00")

// alreadyReplied is handle's way of saying it sent the reply itself.
const alreadyReplied = "-"

func strs(p []byte) ([]string, bool) {
	if len(p) == 0 || p[len(p)-1] != 0 {
		return nil, false
	}
	return strings.Split(string(p[:len(p)-1]), "\x00"), true
}

// resolve turns a request path into an absolute one.
func (c *conn) resolve(p string) (string, bool) {
	if xenstore.ValidatePath(p) != nil {
		return "", false
	}
	if p[0] == '@' {
		return p, true
	}
	if p[0] != '/' {
		p = c.home + "/" + p
	}
	if len(p) > xenstore.AbsPathMax {
		return "", false
	}
	return p, true
}

// handle executes one request under s.mu and returns the reply payload or
// an errno name.
func (c *conn) handle(m xenstore.Message) ([]byte, string) {
	s := c.s
	store := s.store
	var tx *transaction
	if m.TxID != 0 && m.Type != xenstore.TypeWatch && m.Type != xenstore.TypeUnwatch {
		tx = s.txs[m.TxID]
		if tx == nil || tx.conn != c {
			return nil, "ENOENT"
		}
		store = tx.store
	}
	record := func(ch change) {
		if tx != nil {
			tx.changes = append(tx.changes, ch)
			return
		}
		s.gen++
		s.fire(ch)
	}
	pathArg := func() (string, bool) {
		ss, okk := strs(m.Payload)
		if !okk || len(ss) != 1 {
			return "", false
		}
		p, okk := c.resolve(ss[0])
		return p, okk && p[0] == '/'
	}

	switch m.Type {
	case xenstore.TypeRead:
		p, okk := pathArg()
		if !okk {
			return nil, "EINVAL"
		}
		n := store[p]
		if n == nil {
			return nil, "ENOENT"
		}
		return []byte(n.value), ""

	case xenstore.TypeWrite:
		i := strings.IndexByte(string(m.Payload), 0)
		if i < 0 {
			return nil, "EINVAL"
		}
		p, okk := c.resolve(string(m.Payload[:i]))
		if !okk || p[0] != '/' {
			return nil, "EINVAL"
		}
		store.create(p, c.dom)
		store[p].value = string(m.Payload[i+1:])
		record(change{path: p})
		return ok, ""

	case xenstore.TypeMkdir:
		p, okk := pathArg()
		if !okk {
			return nil, "EINVAL"
		}
		if store.create(p, c.dom) {
			record(change{path: p})
		}
		return ok, ""

	case xenstore.TypeRm:
		p, okk := pathArg()
		if !okk || p == "/" {
			return nil, "EINVAL"
		}
		if store[p] == nil {
			if store[parent(p)] == nil {
				return nil, "ENOENT"
			}
			return ok, ""
		}
		store.remove(p)
		record(change{path: p, removed: true})
		return ok, ""

	case xenstore.TypeDirectory:
		p, okk := pathArg()
		if !okk {
			return nil, "EINVAL"
		}
		if store[p] == nil {
			return nil, "ENOENT"
		}
		var out []byte
		for _, n := range store.children(p) {
			out = append(out, n...)
			out = append(out, 0)
		}
		if len(out) > xenstore.PayloadMax {
			return nil, "E2BIG"
		}
		return out, ""

	case xenstore.TypeDirectoryPart:
		ss, okk := strs(m.Payload)
		if !okk || len(ss) != 2 {
			return nil, "EINVAL"
		}
		p, okk := c.resolve(ss[0])
		off, err := strconv.Atoi(ss[1])
		if !okk || p[0] != '/' || err != nil || off < 0 {
			return nil, "EINVAL"
		}
		if store[p] == nil {
			return nil, "ENOENT"
		}
		var list []byte
		for _, n := range store.children(p) {
			list = append(list, n...)
			list = append(list, 0)
		}
		list = append(list, 0)
		if off > len(list) {
			return nil, "EINVAL"
		}
		gen := s.gen
		if tx != nil {
			gen = tx.startGen
		}
		out := strconv.AppendUint(nil, gen, 10)
		out = append(out, 0)
		// Parts hold whole names, as xenstored's do (libxenstore relies on
		// it: it takes a part ending in an empty name as the last), and
		// are kept small so that tests exercise the reassembly.
		part := list[off:]
		if max := xenstore.PayloadMax/4 - len(out); len(part) > max {
			cut := 0
			for i := 0; i < max; i++ {
				if part[i] == 0 {
					cut = i + 1
				}
			}
			if cut == 0 {
				return nil, "E2BIG"
			}
			part = part[:cut]
		}
		return append(out, part...), ""

	case xenstore.TypeGetPerms:
		p, okk := pathArg()
		if !okk {
			return nil, "EINVAL"
		}
		n := store[p]
		if n == nil {
			return nil, "ENOENT"
		}
		var out []byte
		for _, pm := range n.perms {
			out = append(out, pm.String()...)
			out = append(out, 0)
		}
		return out, ""

	case xenstore.TypeSetPerms:
		ss, okk := strs(m.Payload)
		if !okk || len(ss) < 2 {
			return nil, "EINVAL"
		}
		p, okk := c.resolve(ss[0])
		if !okk || p[0] != '/' {
			return nil, "EINVAL"
		}
		var perms []xenstore.Perm
		for _, x := range ss[1:] {
			pm, err := xenstore.ParsePerm(x)
			if err != nil {
				return nil, "EINVAL"
			}
			perms = append(perms, pm)
		}
		n := store[p]
		if n == nil {
			return nil, "ENOENT"
		}
		n.perms = perms
		record(change{path: p})
		return ok, ""

	case xenstore.TypeGetDomainPath:
		ss, okk := strs(m.Payload)
		if !okk || len(ss) != 1 {
			return nil, "EINVAL"
		}
		d, err := xenstore.ParseDomID(ss[0])
		if err != nil {
			return nil, "EINVAL"
		}
		return append([]byte(xenstore.HomePath(d)), 0), ""

	case xenstore.TypeWatch, xenstore.TypeUnwatch:
		ss, okk := strs(m.Payload)
		if !okk || len(ss) < 2 {
			return nil, "EINVAL"
		}
		p, okk := c.resolve(ss[0])
		if !okk {
			return nil, "EINVAL"
		}
		w := watch{path: p, token: ss[1], relative: ss[0][0] != '/' && ss[0][0] != '@'}
		i := slices.IndexFunc(c.watches, func(x watch) bool { return x.path == w.path && x.token == w.token })
		if m.Type == xenstore.TypeUnwatch {
			if i < 0 {
				return nil, "ENOENT"
			}
			c.watches = slices.Delete(c.watches, i, i+1)
			return ok, ""
		}
		if i >= 0 {
			return nil, "EEXIST"
		}
		c.watches = append(c.watches, w)
		// xenstored acks first, then fires the new watch once.
		c.send(xenstore.TypeWatch, m.ReqID, m.TxID, ok)
		c.send(xenstore.TypeWatchEvent, 0, 0, eventPayload(c.eventPath(w, w.path), w.token))
		return nil, alreadyReplied

	case xenstore.TypeTransactionStart:
		if m.TxID != 0 {
			return nil, "EBUSY"
		}
		id := s.nextTx
		s.nextTx++
		if s.nextTx == 0 {
			s.nextTx = 1
		}
		s.txs[id] = &transaction{conn: c, store: s.store.clone(), startGen: s.gen}
		return append(strconv.AppendUint(nil, uint64(id), 10), 0), ""

	case xenstore.TypeTransactionEnd:
		if tx == nil {
			return nil, "ENOENT"
		}
		ss, okk := strs(m.Payload)
		if !okk || len(ss) != 1 || (ss[0] != "T" && ss[0] != "F") {
			return nil, "EINVAL"
		}
		delete(s.txs, m.TxID)
		if ss[0] == "F" {
			return ok, ""
		}
		s.commits++
		if s.force > 0 {
			s.force--
			return nil, "EAGAIN"
		}
		if s.gen != tx.startGen {
			return nil, "EAGAIN"
		}
		if len(tx.changes) > 0 {
			s.store = tx.store
			s.gen++
			for _, ch := range tx.changes {
				s.fire(ch)
			}
		}
		return ok, ""
	}
	return nil, "ENOSYS"
}

func eventPayload(path, token string) []byte {
	return []byte(path + "\x00" + token + "\x00")
}

// eventPath is how an event on absolute path p is reported to watch w:
// relative to the home if the watch was registered relative.
func (c *conn) eventPath(w watch, p string) string {
	if w.relative && strings.HasPrefix(p, c.home+"/") {
		return p[len(c.home)+1:]
	}
	return p
}

// fire sends the events a change causes. Caller holds s.mu.
func (s *Server) fire(ch change) {
	for c := range s.conns {
		for _, w := range c.watches {
			var ep string
			switch {
			case isChild(ch.path, w.path):
				ep = ch.path
			case ch.removed && isChild(w.path, ch.path):
				ep = w.path
			default:
				continue
			}
			c.send(xenstore.TypeWatchEvent, 0, 0, eventPayload(c.eventPath(w, ep), w.token))
		}
	}
}

// Ring is a simulated xenstore ring page shared between a guest and the
// fake server, with the two event-channel directions modelled as pending
// bits.
type Ring struct {
	Page []byte

	toServer, toGuest chan struct{}
	served            chan struct{}
	server            *xenstore.RingConn
}

// GuestNotify signals the server (what the guest's event channel send does).
func (r *Ring) GuestNotify() error {
	select {
	case r.toServer <- struct{}{}:
	default:
	}
	return nil
}

// NotifyGuest signals the guest as the server does, for tests that edit
// the page behind the server's back.
func (r *Ring) NotifyGuest() {
	select {
	case r.toGuest <- struct{}{}:
	default:
	}
}

// GuestWait waits until the server has signalled the guest. After Close
// it waits forever (or until ctx ends), like a guest whose xenstored went
// silent.
func (r *Ring) GuestWait(ctx context.Context) error {
	select {
	case <-r.toGuest:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the server side of the ring and waits for it. The page and
// the guest side stay as they are.
func (r *Ring) Close() {
	r.server.Close()
	<-r.served
}

// NewRing returns a zeroed ring page served for domain dom. The guest side
// is xenstore.NewRingConn(r.Page, r.GuestNotify, r.GuestWait).
func (s *Server) NewRing(dom xenstore.DomID) *Ring {
	r := &Ring{
		Page:     make([]byte, 4096),
		toServer: make(chan struct{}, 1),
		toGuest:  make(chan struct{}, 1),
		served:   make(chan struct{}),
	}
	notify := func() error {
		select {
		case r.toGuest <- struct{}{}:
		default:
		}
		return nil
	}
	wait := func(ctx context.Context) error {
		select {
		case <-r.toServer:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.server = xenstore.NewRingServerConn(r.Page, notify, wait)
	go func() {
		defer close(r.served)
		s.Serve(r.server, dom)
	}()
	return r
}

// Client returns a xenstore client for domain dom connected to s through
// a fresh simulated ring, and a function that closes both.
func (s *Server) Client(dom xenstore.DomID) (*xenstore.Client, func()) {
	r := s.NewRing(dom)
	c := xenstore.NewClient(xenstore.NewRingConn(r.Page, r.GuestNotify, r.GuestWait))
	return c, func() {
		c.Close()
		r.Close()
	}
}

package netfront

import (
	"fmt"

	"github.com/unikgo/unikgo/xenpv/gnttab"
)

// Tx ids. The low byte names the transmit slot (and its page); the high
// byte is the slot's generation, bumped at each use, so a stale or
// repeated response names no slot in flight (Linux netfront keys on the
// slot alone). The backend echoes ids without looking at them.
const txSlotBits = 8

func txID(slot int, gen uint8) uint16 { return uint16(slot) | uint16(gen)<<txSlotBits }

// sendLocked copies frame into k free transmit pages, grants them
// read-only and puts one request per page on c's tx ring: the first
// carries the frame's size, all but the last TxMoreData. With csum the
// first says the checksum is partial (TxCsumBlank|TxDataValidated, as
// Linux netfront sends CHECKSUM_PARTIAL); a GSO extra (its GSOType not
// GSOTypeNone) goes in the slot after the first, which says TxExtraInfo.
// The caller checked that k pages and k ring slots (k+1 with an extra)
// are free.
func (n *NIC) sendLocked(c *conn, frame []byte, k int, csum bool, gso Extra) error {
	slots := n.txFree[len(n.txFree)-k:]
	var refs [SlotsMin]gnttab.Ref
	for i, s := range slots {
		page := n.txPages.bytes(int(s))
		copy(page, frame[i*PageSize:])
		ref, err := n.cfg.Grants.Grant(n.grantDom(), n.txPages.frame(int(s)), true)
		if err != nil {
			// Never published: these revokes cannot find the page in use.
			for j := range i {
				n.cfg.Grants.Revoke(refs[j])
			}
			return fmt.Errorf("netfront: vif %s: granting a transmit page: %w", n.cfg.Device, err)
		}
		refs[i] = ref
	}
	for i, s := range slots {
		slot, err := c.tx.NextRequest()
		if err != nil { // Free was checked
			panic(fmt.Sprintf("netfront: tx ring full after checking for %d free slots", k))
		}
		var extraSlot []byte
		if i == 0 && gso.GSOType != GSOTypeNone {
			if extraSlot, err = c.tx.NextRequest(); err != nil {
				panic(fmt.Sprintf("netfront: tx ring full after checking for %d free slots", k+1))
			}
		}
		t := &n.tx[s]
		t.gen++
		t.state, t.ref = txInflight, refs[i]
		req := TxRequest{Gref: uint32(refs[i]), ID: txID(int(s), t.gen), Size: uint16(min(PageSize, len(frame)-i*PageSize))}
		if i == 0 {
			req.Size = uint16(len(frame))
		}
		if i < k-1 {
			req.Flags = TxMoreData
		}
		if i == 0 && csum {
			req.Flags |= TxCsumBlank | TxDataValidated
		}
		if extraSlot != nil {
			req.Flags |= TxExtraInfo
			gso.Flags = 0
			gso.Put(extraSlot)
			c.nullDue++
		}
		req.Put(slot)
	}
	n.txFree = n.txFree[:len(n.txFree)-k]
	if gso.GSOType != GSOTypeNone {
		n.stats.TxGSO++
	}
	n.stats.TxFrames++
	n.stats.TxBytes += uint64(len(frame))
	if c.tx.Push() {
		// A failed notify leaves the frame on the ring; a dead port shows
		// up as the backend's state change.
		c.ch.Notify()
	}
	return nil
}

// drainTxLocked takes the backend's answers on c's tx ring: each names a
// slot in flight, whose grant is revoked and page freed. Answers naming no
// slot in flight are counted and dropped; when the ring is empty, slots
// still in flight will never be answered and are taken back.
func (n *NIC) drainTxLocked(c *conn) error {
	var buf [TxResponseSize]byte
	freed := false
	for {
		avail, err := c.tx.Responses()
		if err != nil {
			return err
		}
		for range avail {
			freed = n.completeTxLocked(c, ParseTxResponse(c.tx.NextResponse(buf[:]))) || freed
		}
		if c.tx.Outstanding() == 0 {
			c.nullDue = 0
			for s := range n.tx {
				if n.tx[s].state == txInflight {
					n.stats.TxOrphans++
					freed = n.releaseTxLocked(s) || freed
				}
			}
		}
		if !c.tx.FinalCheck() {
			break
		}
	}
	if freed {
		n.wakeTxLocked()
	}
	return nil
}

// completeTxLocked applies one tx response on c's ring and reports
// whether it freed a page.
func (n *NIC) completeTxLocked(c *conn, r TxResponse) bool {
	if r.Status == StatusNull {
		// The answer to an extra info slot (Linux netback writes NULL
		// in the slot after the packet's first response); its id means
		// nothing. More NULLs than extras sent are bad.
		if c.nullDue > 0 {
			c.nullDue--
		} else {
			n.stats.TxBad++
		}
		return false
	}
	s := int(r.ID & (1<<txSlotBits - 1))
	if s >= len(n.tx) || n.tx[s].state != txInflight || n.tx[s].gen != uint8(r.ID>>txSlotBits) {
		n.stats.TxBad++
		return false
	}
	switch r.Status {
	case StatusOkay:
	case StatusError, StatusDropped:
		n.stats.TxErrors++
	default:
		n.stats.TxBad++
	}
	return n.releaseTxLocked(s)
}

// releaseTxLocked revokes the grant of slot s, in flight, and frees it, or
// quarantines it if the backend still holds the page. It reports whether
// the slot is free.
func (n *NIC) releaseTxLocked(s int) bool {
	t := &n.tx[s]
	if err := n.cfg.Grants.Revoke(t.ref); err != nil {
		t.state = txQuarantined
		n.txQuar = append(n.txQuar, quarantined{s, t.ref})
		return false
	}
	t.state = txFree
	n.txFree = append(n.txFree, uint16(s))
	return true
}

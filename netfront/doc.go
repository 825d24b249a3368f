// Package netfront is the frontend of a Xen virtual network interface
// (vif): a netdev.NIC over the netif protocol of Xen's public io/netif.h,
// talking to a backend such as Linux netback.
//
// Handshake. New runs the xenbus handshake as Linux xen-netfront does
// (talk_to_netback, xennet_connect): wait for the backend's InitWait; read
// feature-rx-copy (required, as in Linux), feature-sg, and the MAC (the
// backend's "mac" key, else the frontend's; libxl writes both) and MTU
// (the frontend's "mtu", else the backend's, else 1500); build the tx and
// rx rings (one page each, 256 entries, xenpv/ring), grant them and
// allocate one event channel for both; post receive buffers; then publish
// tx-ring-ref, rx-ring-ref, event-channel, request-rx-copy=1,
// feature-rx-notify=1, feature-sg=1 and feature-no-csum-offload=1 with
// state Connected in one transaction, and wait for the backend to be
// Connected. One queue, no split event channels. Without
// Config.Offload the backend is asked for complete checksums and no GSO,
// so every frame travels whole and checked.
//
// Offload (Config.Offload), negotiated as Linux netfront does
// (xennet_fix_features, talk_to_netback): the frontend also publishes
// feature-gso-tcpv4=1, feature-gso-tcpv6=1, feature-ipv6-csum-offload=1
// and feature-no-csum-offload=0, so the backend may send partial
// checksums (NETRXF_csum_blank) and TCP packets of up to 64 KiB with a
// GSO extra info slot; and if the backend offers feature-sg and
// feature-gso-tcpv4/v6, TransmitMeta sends TCP segments of up to 64 KiB
// with a GSO extra info slot after the first request (type, MSS; never a
// zero size, which netback takes for a fatal error) and
// NETTXF_csum_blank|NETTXF_data_validated for partial checksums. The
// backend answers an extra info slot with a NULL response, which is
// expected exactly once per extra sent. What the first connection agreed
// is the NIC's Offloads for its lifetime; a later backend that offers
// less makes TransmitMeta refuse the frames it cannot send (ErrOffload).
//
// Receiving. Receive pages are granted writable to the backend one
// request at a time; the backend copies a packet into them
// (request-rx-copy) and answers in ring order. Every response is checked
// before anything is delivered: its id must be the one of the request at
// its ring index, its flags only those negotiated (more_data chains of at
// most XEN_NETIF_NR_SLOTS_MIN slots; extra info is parsed to find the
// packet's end and the packet dropped unless it is the one GSO extra
// offload allows, with a TCPv4 or TCPv6 type and a non-zero size), its
// offset and size within the page, and the frame an Ethernet header to
// MTU+18 bytes (MaxRxGSOFrame for a GSO packet). The grants are revoked before the frame is queued for
// Receive, so the backend can no longer change it; a page whose grant the
// backend still holds is quarantined and its packet dropped. Receive
// copies the frame out and posts the pages again. Dropped packets are
// counted in Stats by cause.
//
// Transmitting. Transmit copies the frame into transmit pages (one per
// 4 KiB, several only if the backend offers feature-sg), grants them
// read-only and queues one request per page. Each page's request id
// carries a generation, so a response naming no page in flight (stale,
// repeated, out of range) is counted and ignored; a page is freed only
// after its grant is revoked, and quarantined if the backend still holds
// it. When the tx ring is empty, pages still in flight can no longer be
// answered (their responses were replaced by bad ones) and are taken back.
//
// Untrusted backend. Every xenstore value of the backend is parsed with
// errors. Both rings' producer indexes are checked by xenpv/ring; an
// impossible one takes the NIC down for good (ErrBackendBroken, like Linux
// netfront's "broken"), as does a dead event channel. Nothing the backend
// writes can make the driver panic, loop, or reuse a page it still holds.
//
// Reconnection. When the backend leaves Connected, Transmit drops frames
// with ErrLinkDown and Receive waits. The driver answers Closing with
// Closed, waits for the backend to close, takes what it answered
// meanwhile, revokes every grant, goes back to Initialising and runs the
// handshake again, keeping its MAC and MTU. If the backend is removed or
// does not come back within Config.ReconnectTimeout, the NIC goes down:
// Transmit and Receive fail with netdev.ErrDown, as after Close.
package netfront

package netfront

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/unikgo/unikgo/xenpv/ring"
)

// TestLayout checks the wire format against shared/docs/xen-abi.md,
// "netif": tx_request (12): gref u32@0, offset u16@4, flags u16@6, id
// u16@8, size u16@10; tx_response (4): id u16@0, status i16@2; rx_request
// (8): id u16@0, gref u32@4; rx_response (8): id@0, offset@2, flags@4,
// status i16@6; extra_info (8): type u8@0, flags u8@1, GSO size u16@2,
// type u8@4, features u16@6.
func TestLayout(t *testing.T) {
	got := map[string]int{
		"tx_request.gref": TxRequestGrefOffset, "tx_request.offset": TxRequestOffsetOffset,
		"tx_request.flags": TxRequestFlagsOffset, "tx_request.id": TxRequestIDOffset,
		"tx_request.size": TxRequestSizeOffset, "sizeof tx_request": TxRequestSize,
		"tx_response.id": TxResponseIDOffset, "tx_response.status": TxResponseStatusOffset,
		"sizeof tx_response": TxResponseSize,
		"rx_request.id":      RxRequestIDOffset, "rx_request.gref": RxRequestGrefOffset,
		"sizeof rx_request": RxRequestSize,
		"rx_response.id":    RxResponseIDOffset, "rx_response.offset": RxResponseOffsetOffset,
		"rx_response.flags": RxResponseFlagsOffset, "rx_response.status": RxResponseStatusOffset,
		"sizeof rx_response": RxResponseSize,
		"extra.type":         ExtraTypeOffset, "extra.flags": ExtraFlagsOffset,
		"extra.gso.size": ExtraGSOSizeOffset, "extra.gso.type": ExtraGSOTypeOffset,
		"extra.gso.features": ExtraGSOFeaturesOffset, "sizeof extra": ExtraSize,
	}
	want := map[string]int{
		"tx_request.gref": 0, "tx_request.offset": 4, "tx_request.flags": 6, "tx_request.id": 8,
		"tx_request.size": 10, "sizeof tx_request": 12,
		"tx_response.id": 0, "tx_response.status": 2, "sizeof tx_response": 4,
		"rx_request.id": 0, "rx_request.gref": 4, "sizeof rx_request": 8,
		"rx_response.id": 0, "rx_response.offset": 2, "rx_response.flags": 4, "rx_response.status": 6,
		"sizeof rx_response": 8,
		"extra.type":         0, "extra.flags": 1, "extra.gso.size": 2, "extra.gso.type": 4,
		"extra.gso.features": 6, "sizeof extra": 8,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("netif offsets (-want +got):\n%s", diff)
	}
	flags := map[string]int{
		"NETTXF_csum_blank": TxCsumBlank, "NETTXF_data_validated": TxDataValidated,
		"NETTXF_more_data": TxMoreData, "NETTXF_extra_info": TxExtraInfo,
		"NETRXF_data_validated": RxDataValidated, "NETRXF_csum_blank": RxCsumBlank,
		"NETRXF_more_data": RxMoreData, "NETRXF_extra_info": RxExtraInfo, "NETRXF_gso_prefix": RxGSOPrefix,
		"DROPPED": int(StatusDropped), "ERROR": int(StatusError), "OKAY": int(StatusOkay), "NULL": int(StatusNull),
		"XEN_NETIF_NR_SLOTS_MIN":  SlotsMin,
		"XEN_NETIF_GSO_TYPE_NONE": GSOTypeNone, "XEN_NETIF_GSO_TYPE_TCPV4": GSOTypeTCPv4,
		"XEN_NETIF_GSO_TYPE_TCPV6": GSOTypeTCPv6, "XEN_NETIF_EXTRA_TYPE_GSO": ExtraGSO,
		"XEN_NETIF_EXTRA_FLAG_MORE": ExtraFlagMore, "XEN_NETIF_MAX_TX_SIZE": MaxTxSize,
	}
	wantFlags := map[string]int{
		"NETTXF_csum_blank": 1, "NETTXF_data_validated": 2, "NETTXF_more_data": 4, "NETTXF_extra_info": 8,
		"NETRXF_data_validated": 1, "NETRXF_csum_blank": 2, "NETRXF_more_data": 4, "NETRXF_extra_info": 8,
		"NETRXF_gso_prefix": 16,
		"DROPPED":           -2, "ERROR": -1, "OKAY": 0, "NULL": 1,
		"XEN_NETIF_NR_SLOTS_MIN":  18,
		"XEN_NETIF_GSO_TYPE_NONE": 0, "XEN_NETIF_GSO_TYPE_TCPV4": 1, "XEN_NETIF_GSO_TYPE_TCPV6": 2,
		"XEN_NETIF_EXTRA_TYPE_GSO": 1, "XEN_NETIF_EXTRA_FLAG_MORE": 1, "XEN_NETIF_MAX_TX_SIZE": 0xFFFF,
	}
	if diff := cmp.Diff(wantFlags, flags); diff != "" {
		t.Errorf("netif constants (-want +got):\n%s", diff)
	}
	// "One page: 256 tx / 256 rx entries."
	if tx, rx := ring.Slots(PageSize, TxRequestSize), ring.Slots(PageSize, RxRequestSize); tx != 256 || rx != 256 {
		t.Errorf("one page holds %d tx and %d rx entries, want 256 each", tx, rx)
	}
}

func TestRoundTrips(t *testing.T) {
	b := make([]byte, 12)
	tx := TxRequest{Gref: 0x01020304, Offset: 0x0506, Flags: 0x0708, ID: 0x090a, Size: 0x0b0c}
	tx.Put(b)
	if diff := cmp.Diff([]byte{4, 3, 2, 1, 6, 5, 8, 7, 0xa, 9, 0xc, 0xb}, b); diff != "" {
		t.Errorf("tx request bytes (-want +got):\n%s", diff)
	}
	if ParseTxRequest(b) != tx {
		t.Error("tx request round trip")
	}
	tr := TxResponse{ID: 0xfffe, Status: StatusDropped}
	tr.Put(b)
	if diff := cmp.Diff([]byte{0xfe, 0xff, 0xfe, 0xff}, b[:4]); diff != "" || ParseTxResponse(b) != tr {
		t.Errorf("tx response: %x", b[:4])
	}
	for i := range b {
		b[i] = 0xEE
	}
	rq := RxRequest{ID: 0x0102, Gref: 0x03040506}
	rq.Put(b)
	if diff := cmp.Diff([]byte{2, 1, 0, 0, 6, 5, 4, 3}, b[:8]); diff != "" || ParseRxRequest(b) != rq {
		t.Errorf("rx request: %x", b[:8])
	}
	rr := RxResponse{ID: 1, Offset: 0x0203, Flags: RxMoreData, Status: -1}
	rr.Put(b)
	if diff := cmp.Diff([]byte{1, 0, 3, 2, 4, 0, 0xff, 0xff}, b[:8]); diff != "" || ParseRxResponse(b) != rr {
		t.Errorf("rx response: %x", b[:8])
	}
	e := Extra{Type: ExtraGSO, Flags: ExtraFlagMore, GSOSize: 1448, GSOType: 1, GSOFeatures: 0x0102}
	e.Put(b)
	if diff := cmp.Diff([]byte{1, 1, 0xa8, 5, 1, 0, 2, 1}, b[:8]); diff != "" || ParseExtra(b) != e {
		t.Errorf("extra: %x", b[:8])
	}
	if StatusNull.String() != "null" || Status(7).String() != "status(7)" {
		t.Error("status names")
	}
}

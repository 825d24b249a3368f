// Package virtio is the virtio 1.0 PCI transport ("modern" devices) with
// split virtqueues, shared by the drivers in virtio/blk and virtio/net.
// Section numbers below are those of Virtual I/O Device (VIRTIO) Version
// 1.0 (OASIS committee specification 04).
//
// Transport (4.1.4). Open walks the function's vendor capabilities
// (VIRTIO_PCI_CAP_COMMON_CFG, NOTIFY_CFG, ISR_CFG and DEVICE_CFG) and uses
// the first of each type whose BAR exists and whose offset and length
// lie inside that BAR; a device without a common, notify or ISR structure
// is refused (ErrNoModern), which is how transitional devices that only
// have the legacy I/O interface are told apart. The common configuration
// must be at least the 56 bytes of 4.1.4.3; the notification address of
// each queue (4.1.4.4) is checked against the notify structure.
//
// Initialization (3.1.1). Open resets the device, waits until the status
// reads back 0, and sets ACKNOWLEDGE and DRIVER. Negotiate reads the
// feature bits (2.2), requires VIRTIO_F_VERSION_1 (6), accepts
// VIRTIO_F_ACCESS_PLATFORM when offered (addresses are physical and there
// is no IOMMU to program), writes the driver's subset, sets FEATURES_OK
// and checks that it stuck. SetupQueues sets up each virtqueue (4.1.5.1.3)
// and its MSI-X vector; Start sets DRIVER_OK. Device configuration is
// read under config_generation (2.3.1) so multi-field values are
// consistent.
//
// Virtqueues (2.4). Queues are split rings (descriptor table, available
// ring, used ring) in one DMA region, with descriptor chains (2.4.5) whose
// device-readable buffers come before device-writable ones (2.4.4.2). The
// driver keeps its own copy of every chain, so nothing it reads back from
// shared memory is trusted: a used element (2.4.8) whose id is not the
// head of an outstanding chain, or a used index that runs ahead of what
// is outstanding, breaks the queue (ErrBroken) and never panics; a length
// larger than the chain's device-writable bytes is reported with the
// element (ErrLength). Notifications and interrupts: the driver notifies
// unless the device sets VIRTQ_USED_F_NO_NOTIFY (2.4.7.2), and a queue
// asks for no interrupts with VIRTQ_AVAIL_F_NO_INTERRUPT while its driver
// polls it (SetInterrupts, 2.7.7); neither VIRTIO_F_EVENT_IDX nor
// indirect descriptors are negotiated.
//
// Interrupts (4.1.4.5, 4.1.5.1.2). With MSI-X and enough vectors, the
// configuration change and each queue get their own vector; with fewer,
// one vector is shared; without MSI-X, or if the device refuses a vector
// (reads back VIRTIO_MSI_NO_VECTOR), the driver polls the used rings and
// the ISR status instead. Either way every queue has a Ready channel; a
// queue's own vector is its Ready channel, with no goroutine between.
//
// Shutdown. Close resets the device, waits for the reset to complete and
// turns off bus mastering before the rings are freed, so a device cannot
// write into memory that has been reused; rings of a device that never
// completes its reset are leaked rather than freed.
package virtio

package xenlab

import "time"

// Lab-wide constants. They are kept together because dom0-init, the hotplug scripts and
// the guest configurations generated here must agree on them.
const (
	// BridgeName is the bridge dom0 creates; guests' vifs are attached to it.
	BridgeName = "xenbr0"
	// Dom0Addr is dom0's address on the bridge (a /24).
	Dom0Addr = "10.0.0.1"
	// ShareMount is where dom0 mounts the host's share directory.
	ShareMount = "/lab"

	ctlPortName   = "xenlab.ctl"   // virtio-serial port name dom0-init looks for
	shareTag      = "xenlab.share" // 9p mount tag
	xenLogName    = "xen.log"      // Xen's COM1 console in the work directory
	qemuLogName   = "qemu.log"     // QEMU's own stderr
	shareDirName  = "share"        // the 9p share in the work directory
	logsDirName   = "logs"         // under share: dom0's /var/log/xen
	imagesDirName = "images"       // under share: guest kernels, ramdisks, disks, configs

	minQEMUMajor       = 10  // see checkQEMU
	minGuestMemMiB     = 256 // memory left to guests at the least
	defaultMemoryMiB   = 3072
	defaultDom0MemMiB  = 1536
	defaultCPUs        = 1
	defaultBootTimeout = 3 * time.Minute
	defaultLabTimeout  = 20 * time.Minute
	defaultRunTimeout  = 60 * time.Second
	shutdownGrace      = 20 * time.Second // dom0 poweroff before QEMU is killed
	pollInterval       = 100 * time.Millisecond
	heartbeatInterval  = 20 * time.Second // progress while building the dom0
	cleanupGrace       = 10 * time.Second // WaitShutdown: how long to wait for xl's cleanup

	// xlCleanedUp is what xl's per-domain log says once a destroyed domain is cleaned up.
	xlCleanedUp = "Done. Exiting now"
)

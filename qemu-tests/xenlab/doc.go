// Package xenlab runs real Xen under QEMU so tests can prove Xen-specific code against
// the real thing: Xen's hypervisor, Linux's netback and blkback, oxenstored, xenconsoled
// and xl.
//
// A lab is one QEMU process (TCG, "-cpu max" for SVM+NPT) booting Debian's Xen 4.17 with
// a Debian Linux dom0 whose whole root is an initramfs. The dom0 is built once from Debian
// packages by assets/build-dom0.sh and cached under
// ${XDG_CACHE_HOME:-$HOME/.cache}/unikgo/xenlab/<key>/, where the key hashes the package
// versions and the build assets, so a package update or an edited script rebuilds it.
//
// The host talks to dom0 over two QEMU devices:
//   - a virtio-serial port ("xenlab.ctl") connected to a unix socket the lab listens on,
//     carrying a line protocol served by dom0's init (see assets/dom0-init): run a shell
//     script with a timeout, get its output and exit status;
//   - a 9p share ("xenlab.share") of the lab's work directory, mounted at /lab in dom0.
//     Guest kernels and disk images are copied there, and dom0's /var/log/xen is bound
//     to its logs/ directory, so xl's per-domain logs and xenconsoled's per-guest console
//     logs are written straight to the host and survive a hung or killed dom0.
//
// Xen's own console (COM1) goes to xen.log in the work directory: it carries the
// hypervisor's messages, dom0's kernel console and guests' port 0xE9 output as "(dN)"
// lines (the lab boots Xen with guest_loglvl=all).
//
// Every lab has a deadline after which QEMU is killed (logs stay in the work directory),
// QEMU dies with the process that started it, and Close always reaps it.
package xenlab

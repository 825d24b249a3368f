#!/bin/sh
# build-dom0.sh: build the Xen lab's boot artefacts from Debian bookworm packages.
#
#   build-dom0.sh versions      print "package version" for every package the build takes
#                               from bookworm/main, as apt on this host sees it, and the
#                               format of the debootstrapped root (the cache keys)
#   build-dom0.sh build OUTDIR [ROOTTAR]
#                               build into OUTDIR (created; must not exist). With ROOTTAR,
#                               the debootstrapped root is reused from that tar file when it
#                               exists and saved there otherwise, so editing the other assets
#                               costs seconds instead of a new debootstrap. The caller names
#                               ROOTTAR after the "versions" output.
#
# OUTDIR receives: xen (the hypervisor as a multiboot ELF), vmlinuz (dom0 and baseline
# kernel), dom0.cpio (the whole pruned dom0 root as an uncompressed initramfs), baseline.cpio.gz
# (busybox initramfs of the Linux baseline guest) and manifest.txt (installed package versions).
# Progress goes to stderr as "step N/6: ..." lines; tool logs go to OUTDIR.log next to OUTDIR.
# Downloads come only from deb.debian.org through debootstrap.
set -eu
export PATH="$PATH:/usr/sbin:/sbin"

here=$(cd "$(dirname "$0")" && pwd)
mirror=http://deb.debian.org/debian
suite=bookworm
# Bump when step 1 changes in a way the package versions do not show (it keys ROOTTAR).
root_format=1
# Top-level packages of the dom0 root. Their versions (and this script) key the cache.
pkgs="xen-hypervisor-4.17-amd64 xen-utils-4.17 linux-image-amd64 iproute2 kmod busybox-static procps"
# Modules dom0 loads (plus their dependencies); everything else under /lib/modules is pruned.
dom0_modules="xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback xen-blkback bridge loop
virtio_pci virtio_console 9pnet_virtio 9p"
# Modules of the baseline guest, in load order after dependency resolution.
baseline_modules="xen-netfront xen-blkfront"

versions() {
	# One apt-cache call for all packages (each call loads apt's cache: about a second).
	# shellcheck disable=SC2086
	apt-cache madison $pkgs 2>/dev/null | awk -F'|' -v s=" $suite/main " -v want="$pkgs" '
		index($3, s) { p = $1; gsub(/ /, "", p); v = $2; gsub(/ /, "", v); if (!(p in ver)) ver[p] = v }
		END {
			n = split(want, w, " ")
			for (i = 1; i <= n; i++) {
				if (!(w[i] in ver)) { print "missing " w[i]; bad = 1; continue }
				print w[i] " " ver[w[i]]
			}
			exit bad
		}' || {
		echo "build-dom0.sh: apt knows no $suite/main version of some packages; run install-deps.sh (apt-get update)" >&2
		exit 1
	}
	echo "debootstrap $(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo none)"
	echo "root-format $root_format"
}

step() { echo "step $1/6: $2" >&2; }

build() {
	out=$1
	roottar=${2:-}
	log=$out.log
	[ ! -e "$out" ] || { echo "build-dom0.sh: $out already exists" >&2; exit 1; }
	for t in debootstrap cpio gzip depmod modprobe; do
		command -v "$t" >/dev/null || { echo "build-dom0.sh: $t missing; run qemu-tests/xenlab/install-deps.sh" >&2; exit 1; }
	done
	mkdir -p "$out"
	root=$out/root
	: >"$log"

	if [ -n "$roottar" ] && [ -s "$roottar" ]; then
		step 1 "unpack the cached debootstrap root ($(basename "$roottar"))"
		mkdir "$root"
		tar -xpf "$roottar" -C "$root"
	else
		step 1 "debootstrap $suite minbase + Xen, kernel, busybox (3-8 minutes)"
		# INITRD=No: the kernel's postinst would otherwise build an initrd we never use.
		if ! INITRD=No debootstrap --variant=minbase --include="$(echo $pkgs | tr ' ' ,)" \
			"$suite" "$root" "$mirror" >>"$log" 2>&1; then
			echo "build-dom0.sh: debootstrap failed; see $log" >&2
			exit 1
		fi
		if [ -n "$roottar" ]; then
			# Written aside and renamed: an interrupted save never leaves a partial tar.
			tar -cf "$roottar.tmp.$$" -C "$root" . && mv "$roottar.tmp.$$" "$roottar" ||
				{ rm -f "$roottar.tmp.$$"; echo "build-dom0.sh: warning: could not save $roottar" >&2; }
		fi
	fi
	kver=$(ls "$root/lib/modules")
	dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package} ${Version}\n' >"$out/manifest.txt"

	step 2 "extract hypervisor and kernel ($kver)"
	gzip -dc "$root/boot/xen-4.17-amd64.gz" >"$out/xen"
	cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"

	step 3 "baseline guest initramfs (busybox, xen-netfront, xen-blkfront)"
	b=$out/baseline
	mkdir -p "$b/bin" "$b/sbin" "$b/proc" "$b/sys" "$b/dev" "$b/modules"
	cp "$root/bin/busybox" "$b/bin/busybox"
	for a in $(chroot "$root" /bin/busybox --list); do
		[ "$a" = busybox ] || ln -sf busybox "$b/bin/$a"
	done
	cp "$here/baseline-init" "$b/init"
	for m in $baseline_modules; do
		modprobe -d "$root" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
	done | awk '!seen[$0]++' | while read -r ko; do
		cp "$ko" "$b/modules/"
		basename "$ko" >>"$b/modules/order"
	done
	(cd "$b" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 >"$out/baseline.cpio.gz"
	rm -rf "$b"

	step 4 "prune dom0 root"
	keep=$(for m in $dom0_modules; do
		modprobe -d "$root" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
	done | sort -u)
	mods=$root/lib/modules/$kver
	mkdir "$out/keepmods"
	# modprobe -d prints paths under $root; keep them relative to the root.
	for ko in $keep; do
		rel=${ko#"$root"}
		mkdir -p "$out/keepmods$(dirname "$rel")"
		cp "$ko" "$out/keepmods$rel"
	done
	rm -rf "$mods/kernel"
	cp -a "$out/keepmods/lib/modules/$kver/kernel" "$mods/kernel"
	rm -rf "$out/keepmods"
	depmod -b "$root" "$kver"
	rm -rf "$root/boot" "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" \
		"$root/usr/share/locale" "$root/usr/share/i18n" "$root/usr/share/zoneinfo" \
		"$root/var/cache/apt" "$root/var/lib/apt/lists" "$root/var/cache/debconf/"*-old \
		"$root/usr/lib/firmware" "$root/lib/firmware" "$root/usr/share/bash-completion" \
		"$root/usr/lib/xen-4.17/boot" "$root/usr/share/qemu" "$root/usr/lib/x86_64-linux-gnu/gconv"

	step 5 "install dom0 init and hotplug scripts"
	cp "$here/dom0-init" "$root/init"
	cp "$here/vif-lab" "$here/block-lab" "$root/etc/xen/scripts/"
	chmod 755 "$root/init" "$root/etc/xen/scripts/vif-lab" "$root/etc/xen/scripts/block-lab"
	echo xenlab-dom0 >"$root/etc/hostname"

	step 6 "pack dom0 root as initramfs"
	(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$out/dom0.cpio"
	rm -rf "$root"
	echo "dom0 ready: $(du -sh "$out/dom0.cpio" | cut -f1) initramfs, kernel $kver" >&2
}

case "${1:-}" in
versions) versions ;;
build) [ $# -eq 2 ] || [ $# -eq 3 ] || { echo "usage: build-dom0.sh build OUTDIR [ROOTTAR]" >&2; exit 2; }; build "$2" "${3:-}" ;;
*) echo "usage: build-dom0.sh versions | build OUTDIR [ROOTTAR]" >&2; exit 2 ;;
esac

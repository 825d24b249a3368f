#!/bin/sh
# install-deps.sh: install what the Xen lab needs on a Debian bookworm machine.
#
# Idempotent and non-interactive: safe to run on every CI job and on a developer machine.
# It installs the emulator, the tools that build the cached dom0 (debootstrap, cpio, gzip,
# kmod) and refreshes apt's package lists, because the dom0 cache key is computed from the
# candidate versions apt reports.
#
# The emulator comes from bookworm-backports (QEMU 10.x): bookworm's QEMU 7.2 boots plain
# PVH images but its TCG crashes Xen's PV dom0 with a page fault right after Xen hands
# over. One QEMU serves both the lab and plain "qemu-system-x86_64 -kernel" boots. Everything else the lab uses (Xen,
# the dom0 kernel, xl, oxenstored, busybox) is downloaded from Debian's mirror into the
# dom0 cache by build-dom0.sh, not installed on the host.
set -eu
export PATH="$PATH:/usr/sbin:/sbin"

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: must run as root (it calls apt-get); rerun with sudo" >&2
	exit 2
fi
if ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
	echo "install-deps.sh: warning: this script is written for Debian bookworm" >&2
fi

export DEBIAN_FRONTEND=noninteractive
pkgs="debootstrap cpio gzip kmod"
backports=/etc/apt/sources.list.d/xenlab-bookworm-backports.list

if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	echo "install-deps.sh: adding deb.debian.org bookworm-backports to apt sources ($backports)" >&2
	echo "deb http://deb.debian.org/debian bookworm-backports main" >"$backports"
fi
echo "install-deps.sh: refreshing apt package lists" >&2
apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null

# QEMU from backports unless a 10.x is already installed.
if ! qemu-system-x86_64 --version 2>/dev/null | grep -q 'version 1[0-9]\.'; then
	echo "install-deps.sh: installing qemu-system-x86 from bookworm-backports" >&2
	apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
fi

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	echo "install-deps.sh: installing$missing" >&2
	# shellcheck disable=SC2086
	apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $missing >/dev/null
fi
echo "install-deps.sh: ok ($(qemu-system-x86_64 --version | head -n 1))" >&2

#!/bin/sh
# install-deps.sh installs what unikbuild needs on Debian bookworm besides Go
# itself: QEMU's x86 system emulator (unikbuild run/test) and binutils
# (objdump/readelf, used to check 32-bit entry code by hand).
# Idempotent and non-interactive; prints nothing when all is in place.
set -eu

packages="qemu-system-x86 binutils"

missing=""
for p in $packages; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo "$0" "$@"
	fi
	echo "install-deps.sh: need root to install:$missing (run as root or install sudo)" >&2
	exit 2
fi

echo "install-deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $missing >/dev/null

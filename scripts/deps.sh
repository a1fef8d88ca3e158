#!/bin/sh
# deps.sh — make sure the Debian packages tunepipe builds and tests with are
# installed. Idempotent: installs only what is missing, with apt-get when run
# as root; otherwise names the packages and the command to install them.
set -eu

packages="gcc make libc6-dev libcjson-dev libopenblas-dev libzstd-dev libutf8proc-dev
perl man-db groff-base curl zstd openmpi-bin libopenmpi-dev"

missing=
for p in $packages; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case $status in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: install them with: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet: update once, then retry.
apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends $missing >/dev/null
}
echo "deps: done" >&2

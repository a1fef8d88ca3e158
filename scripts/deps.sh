#!/bin/sh
# deps.sh — make sure the Debian packages tunepipe builds and tests with are
# installed. Idempotent: installs only what is missing, with apt-get when run
# as root; otherwise names the packages and the command to install them.
set -eu

packages="gcc make libc6-dev libcjson-dev libopenblas-dev libzstd-dev libutf8proc-dev
libmicrohttpd-dev perl man-db groff-base curl zstd nodejs chromium openmpi-bin libopenmpi-dev"

missing=
for p in $packages; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case $status in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done

# neox-serve's tests drive it with the official openai client and the page
# with playwright-core, from npm at the versions of tests/node's lock file,
# into tests/node/node_modules (git-ignored).
node_deps() {
	node=$(dirname "$0")/../tests/node
	[ -d "$node/node_modules/openai" ] && [ -d "$node/node_modules/playwright-core" ] && return 0
	command -v npm >/dev/null || return 0
	echo "deps: npm ci in tests/node" >&2
	(cd "$node" && npm ci --no-audit --no-fund >/dev/null) ||
		echo "deps: npm ci failed: neox-serve's client tests will skip" >&2
}

# Debian's npm, unless the nodejs installed brings its own (NodeSource's does).
command -v npm >/dev/null || missing="$missing npm"

if [ -z "$missing" ]; then
	node_deps
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
node_deps
echo "deps: done" >&2

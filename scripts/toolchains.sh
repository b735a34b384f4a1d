#!/usr/bin/env bash
# Installs, idempotently, what building non-Go guests needs on a fresh Debian
# machine (see ../shared/design/FACTS.md). Usage: scripts/toolchains.sh [wat] [c] [rust] [as]
# With no argument it installs everything. Each part is skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."

want() { [ $# -eq 0 ] && return 0; for w in "${@:2}"; do [ "$w" = "$1" ] && return 0; done; return 1; }
sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
	if [ $apt_updated = 0 ]; then sudo_if apt-get update -qq; apt_updated=1; fi
	sudo_if env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

parts=("$@")
if want wat "${parts[@]}" && ! command -v wat2wasm >/dev/null; then
	echo "toolchains: installing wabt (wat2wasm)"; apt_install wabt
fi

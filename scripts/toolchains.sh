#!/usr/bin/env bash
# Installs, idempotently, what building non-Go guests needs on a fresh Debian
# machine (sdk/README.md, sdk/<lang>/README.md):
#
#   scripts/toolchains.sh [c] [rust] [as] [wat] [extism-as] [browser]
#                                        # no argument: c, rust, as, wat, browser
#
#   c     clang-14, lld-14, wasi-libc, libclang-rt-14-dev-wasm32 (apt)
#   rust  Debian's rustc 1.63 and its wasm32-wasi std (apt; use /usr/bin/rustc)
#   as    AssemblyScript 0.28.20 into sdk/assemblyscript/node_modules (npm ci,
#         project-local, never global; nodejs and npm from apt when missing)
#   wat   wabt (wat2wasm)
#   extism-as  the Extism AssemblyScript PDK (@extism/as-pdk 1.0.0) with
#         AssemblyScript 0.28.20 into examples/extism/assemblyscript/node_modules
#         (npm ci, project-local); scripts/build-extism-plugins.sh uses it
#   browser  Debian's chromium, for the dashboard's browser test (e2e/ui_test.go)
#
# A part whose packages are present is skipped; apt-get update runs at most
# once, and only when the package lists are older than a day. The versions in
# use are printed and written to build/toolchains.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(c rust as wat browser)
for p in "${parts[@]}"; do
	case "$p" in
	c | rust | as | wat | extism-as | browser) ;;
	*) echo "toolchains: unknown part '$p' (want c, rust, as, wat, extism-as, browser)" >&2; exit 2 ;;
	esac
done
want() { for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
apt_updated=0
apt_install() {
	local missing=()
	for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	command -v apt-get >/dev/null || { echo "toolchains: apt-get not found: install ${missing[*]} by hand (Debian 12 package names)" >&2; exit 1; }
	if [ $apt_updated = 0 ] && ! find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | grep -q .; then
		echo "toolchains: apt-get update"
		sudo_if apt-get update -qq
	fi
	apt_updated=1
	echo "toolchains: apt-get install ${missing[*]}"
	sudo_if env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }

versions=()
if want c; then
	apt_install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32
	versions+=("c: clang-14 $(pkgver clang-14), lld-14 $(pkgver lld-14), wasi-libc $(pkgver wasi-libc)")
fi
if want rust; then
	apt_install rustc libstd-rust-dev-wasm32
	versions+=("rust: $(/usr/bin/rustc --version) (Debian $(pkgver rustc)), libstd-rust-dev-wasm32 $(pkgver libstd-rust-dev-wasm32)")
fi
if want as; then
	command -v npm >/dev/null || apt_install nodejs npm
	if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
		echo "toolchains: warning: AssemblyScript 0.28 wants Node.js 20 or newer, this is $(node --version)" >&2
	fi
	asdir=sdk/assemblyscript
	if [ "$(cd "$asdir" && node -p 'try{require("assemblyscript/package.json").version}catch(e){""}' 2>/dev/null)" != 0.28.20 ]; then
		echo "toolchains: npm ci in $asdir (assemblyscript 0.28.20, project-local)"
		(cd "$asdir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	fi
	versions+=("as: assemblyscript $(cd "$asdir" && node -p 'require("assemblyscript/package.json").version'), node $(node --version)")
fi
if want extism-as; then
	command -v npm >/dev/null || apt_install nodejs npm
	exdir=examples/extism/assemblyscript
	if [ "$(cd "$exdir" && node -p 'try{require("@extism/as-pdk/package.json").version+" "+require("assemblyscript/package.json").version}catch(e){""}' 2>/dev/null)" != "1.0.0 0.28.20" ]; then
		echo "toolchains: npm ci in $exdir (@extism/as-pdk 1.0.0, assemblyscript 0.28.20, project-local)"
		(cd "$exdir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	fi
	versions+=("extism-as: @extism/as-pdk $(cd "$exdir" && node -p 'require("@extism/as-pdk/package.json").version'), assemblyscript $(cd "$exdir" && node -p 'require("assemblyscript/package.json").version')")
fi
if want wat; then
	apt_install wabt
	versions+=("wat: wabt $(wat2wasm --version)")
fi
if want browser; then
	apt_install chromium
	versions+=("browser: $(chromium --version 2>/dev/null | head -1)")
fi

# build/toolchains.txt keeps one line per part, the other parts' lines included.
mkdir -p build
touch build/toolchains.txt
{
	for p in "${parts[@]}"; do echo "^$p: "; done >build/toolchains.keep
	grep -v -f build/toolchains.keep build/toolchains.txt || true
	for v in "${versions[@]}"; do echo "$v"; done
} | sort >build/toolchains.txt.tmp
rm -f build/toolchains.keep
mv build/toolchains.txt.tmp build/toolchains.txt
for v in "${versions[@]}"; do echo "toolchains: $v"; done

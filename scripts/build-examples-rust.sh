#!/usr/bin/env bash
# Builds the Rust examples (examples/rust/*/*.rs, SDK sdk/rust) into OUTDIR as
# rust-<name>.wasm with Debian's rustc 1.63 (no cargo needed).
# Usage: scripts/build-examples-rust.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: $0 OUTDIR}
mkdir -p "$OUT"
RUSTC=/usr/bin/rustc # a rustup toolchain without the wasm std may shadow it on PATH
SELF=/usr/lib/rustlib/wasm32-wasi/lib/self-contained
if [ ! -x "$RUSTC" ] || [ ! -f "$SELF/crt1-reactor.o" ]; then
	scripts/toolchains.sh rust
fi
LIB=$(mktemp -d "${TMPDIR:-/tmp}/wasmtask-rust.XXXXXX")
trap 'rm -rf "$LIB"' EXIT
"$RUSTC" --edition 2018 --crate-type rlib --crate-name wasmtask --target wasm32-wasi -C opt-level=2 \
	sdk/rust/src/lib.rs -o "$LIB/libwasmtask.rlib"
for src in examples/rust/*/*.rs; do
	name=rust-$(basename "$src" .rs)
	# a reactor: crt1-reactor.o provides _initialize, which must be exported
	"$RUSTC" --edition 2018 --crate-type cdylib --target wasm32-wasi -C opt-level=2 -C strip=symbols \
		--extern wasmtask="$LIB/libwasmtask.rlib" \
		-C link-arg="$SELF/crt1-reactor.o" -C link-arg=--export=_initialize -C link-arg=-zstack-size=65536 \
		-o "$OUT/$name.wasm.tmp" "$src"
	mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
done

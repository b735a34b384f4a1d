#!/usr/bin/env bash
# Builds the WAT examples (examples/wat/*/*.wat, no SDK) into OUTDIR as
# wat-<name>.wasm. Usage: scripts/build-examples-wat.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: $0 OUTDIR}
mkdir -p "$OUT"
command -v wat2wasm >/dev/null || scripts/toolchains.sh wat
for src in examples/wat/*/*.wat; do
	name=wat-$(basename "$src" .wat)
	wat2wasm "$src" -o "$OUT/$name.wasm.tmp"
	mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
done

#!/usr/bin/env bash
# Builds the AssemblyScript examples (examples/assemblyscript/*/*.ts, SDK
# sdk/assemblyscript) into OUTDIR as as-<name>.wasm with the project-local
# AssemblyScript 0.28.20. Usage: scripts/build-examples-as.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: $0 OUTDIR}
mkdir -p "$OUT"
ASC=sdk/assemblyscript/node_modules/.bin/asc
if [ ! -x "$ASC" ]; then
	scripts/toolchains.sh as
fi
for src in examples/assemblyscript/*/*.ts; do
	name=as-$(basename "$src" .ts)
	# stub runtime: no GC (one attempt per instance); abort= : no env.abort import
	"$ASC" "$src" -O3 --runtime stub --use abort= -o "$OUT/$name.wasm.tmp"
	mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
done

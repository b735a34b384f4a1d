#!/usr/bin/env bash
# Builds the C examples (examples/c/*/*.c, SDK sdk/c/wasmtask.h) into OUTDIR
# as c-<name>.wasm. Usage: scripts/build-examples-c.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: $0 OUTDIR}
mkdir -p "$OUT"
if ! command -v clang-14 >/dev/null || ! command -v wasm-ld-14 >/dev/null || [ ! -f /usr/include/wasm32-wasi/stdio.h ]; then
	scripts/toolchains.sh c
fi
for src in examples/c/*/*.c; do
	name=c-$(basename "$src" .c)
	# reactor: exports _initialize (constructors); --stack-first: a stack overflow traps
	# instead of overwriting data; --strip-all drops wasi-libc's debug info
	clang-14 --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Werror -I sdk/c \
		-Wl,-z,stack-size=65536 -Wl,--stack-first -Wl,--strip-all -o "$OUT/$name.wasm.tmp" "$src"
	mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
done

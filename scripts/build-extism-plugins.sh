#!/usr/bin/env bash
# Regenerates the checked-in Extism test plugins in host/testdata/extism/
# from their sources in examples/extism/ (`make extism-plugins`):
#
#   wat_count_vowels.wasm  examples/extism/wat/count_vowels.wat (wabt)
#   as_plugins.wasm        examples/extism/assemblyscript/assembly/index.ts
#                          (@extism/as-pdk 1.0.0, AssemblyScript 0.28.20)
#
# The toolchains come from scripts/toolchains.sh (parts wat and extism-as,
# both idempotent). `make test` needs none of this: the .wasm files are
# checked in. The other modules in host/testdata/extism/ were built by the
# Extism project (see its README) and are not regenerated here.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=host/testdata/extism
mkdir -p "$OUT"
command -v wat2wasm >/dev/null || scripts/toolchains.sh wat
wat2wasm examples/extism/wat/count_vowels.wat -o "$OUT/wat_count_vowels.wasm"
ASDIR=examples/extism/assemblyscript
if [ ! -x "$ASDIR/node_modules/.bin/asc" ] || [ ! -d "$ASDIR/node_modules/@extism/as-pdk" ]; then
	scripts/toolchains.sh extism-as
fi
(cd "$ASDIR" && node_modules/.bin/asc assembly/index.ts -O3 --runtime stub \
	--use abort=assembly/index/abortWithError -o ../../../"$OUT/as_plugins.wasm.tmp")
mv "$OUT/as_plugins.wasm.tmp" "$OUT/as_plugins.wasm"
echo "extism plugins: $(cd "$OUT" && ls -1 wat_count_vowels.wasm as_plugins.wasm | tr '\n' ' ')"

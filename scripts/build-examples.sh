#!/usr/bin/env bash
# Builds the example plugins into examples/out. Usage: scripts/build-examples.sh [go] [c] [rust] [as] [wat]
# With no argument it builds every language, installing missing toolchains first
# (scripts/toolchains.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=examples/out
mkdir -p "$OUT"
langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(go c rust as wat)

for lang in "${langs[@]}"; do
	case "$lang" in
	go)
		for dir in examples/go/*/; do
			name=$(basename "$dir")
			GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$OUT/$name.wasm.tmp" "./$dir"
			# rename: the server's watch never sees a half-written module
			mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
			# a manifest beside the source (NAME/NAME.json) goes beside the module
			if [ -f "$dir/$name.json" ]; then cp "$dir/$name.json" "$OUT/$name.json"; fi
		done
		;;
	*)
		if [ -x "scripts/build-examples-$lang.sh" ]; then
			"scripts/build-examples-$lang.sh" "$OUT"
		else
			echo "build-examples: no examples for $lang yet" >&2
		fi
		;;
	esac
done

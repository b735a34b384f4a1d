#!/usr/bin/env bash
# make bench-server: build wasmtask, start a server on a temporary data dir,
# run `wasmtask bench` against it (a built-in no-op WAT handler through the
# HTTP API: throughput with 1 and 32 clients and with the batch endpoint,
# latency at steady offered rates), and stop the server.
# Arguments are passed to `wasmtask bench` (e.g. --tasks 20000 --rates 200,1000);
# SERVE_FLAGS are passed to `wasmtask serve` (e.g. SERVE_FLAGS="--workers 32").
# BENCH_HANDLER=go runs a Go no-op (cmd/wasmtask/testdata/gonoop, built here)
# instead of the WAT one: BENCH_HANDLER=go scripts/bench-server.sh --instances reuse
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/wasmtask
go build -o "$BIN" ./cmd/wasmtask
handler=()
case "${BENCH_HANDLER:-wat}" in
wat) ;;
go)
	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o bin/gonoop.wasm ./cmd/wasmtask/testdata/gonoop
	handler=(--handler-wasm bin/gonoop.wasm)
	;;
*) echo "BENCH_HANDLER: want wat or go, got ${BENCH_HANDLER}" >&2; exit 2 ;;
esac

# shellcheck source=scripts/serverlib.sh
. scripts/serverlib.sh
# shellcheck disable=SC2086
start_server bench ${SERVE_FLAGS:-}
echo "wasmtask serve ${SERVE_FLAGS:-} on $(nproc) CPUs, data dir on $(df -P "$WORK" | awk 'NR==2{print $1}')"
"$BIN" bench --server "$ADDR" "${handler[@]}" "$@"

#!/usr/bin/env bash
# make bench-server: build wasmtask, start a server on a temporary data dir,
# run `wasmtask bench` against it (a built-in no-op WAT handler through the
# HTTP API: throughput with 1 and 32 clients and with the batch endpoint,
# latency at steady offered rates), and stop the server.
# Arguments are passed to `wasmtask bench` (e.g. --tasks 20000 --rates 200,1000);
# SERVE_FLAGS are passed to `wasmtask serve` (e.g. SERVE_FLAGS="--workers 32").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/wasmtask
go build -o "$BIN" ./cmd/wasmtask

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wasmtask-bench.XXXXXX")
LOG=$WORK/serve.log
cleanup() {
	if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck disable=SC2086
"$BIN" serve --data-dir "$WORK/data" --addr 127.0.0.1:0 ${SERVE_FLAGS:-} >"$LOG" 2>&1 &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 200); do
	ADDR=$(sed -n 's/.*listening: addr=\(http:[^ ]*\).*/\1/p' "$LOG" | head -1)
	[ -n "$ADDR" ] && break
	kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG"; echo "bench: the server exited"; exit 1; }
	sleep 0.05
done
[ -n "$ADDR" ] || { cat "$LOG"; echo "bench: the server did not start"; exit 1; }
echo "wasmtask serve ${SERVE_FLAGS:-} on $(nproc) CPUs, data dir on $(df -P "$WORK" | awk 'NR==2{print $1}')"
"$BIN" bench --server "$ADDR" "$@"

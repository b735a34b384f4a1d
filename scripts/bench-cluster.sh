#!/usr/bin/env bash
# make bench-cluster: `wasmtask bench` (a no-op WAT handler through the HTTP
# API, fsync on) against one `wasmtask serve` and against a three-node
# cluster on loopback (serve --node-id ...), ROUNDS times each, alternating
# so that both see the same machine load. The cluster is measured through
# its leader and through a follower (which forwards to the leader).
# Arguments are passed to `wasmtask bench` (default: --tasks 5000
# --clients 1,32,256 --batch 500 --rates 200,1000 --duration 5s: one
# client shows a commit's latency, 256 the throughput under load).
# WASMTASK_BIN=path measures that binary instead of building this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WASMTASK_BIN:-$PWD/bin/wasmtask}
[ -n "${WASMTASK_BIN:-}" ] || go build -o "$BIN" ./cmd/wasmtask
ROUNDS=${ROUNDS:-2}
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(--tasks 5000 --clients 1,32,256 --batch 500 --rates 200,1000 --duration 5s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wasmtask-bench-cluster.XXXXXX")
PIDS=()
stop_all() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start NAME [serve flags...]: sets ADDR to the node's API URL.
start() {
	local name=$1
	shift
	local port
	port=$(free_port)
	"$BIN" serve --data-dir "$WORK/$name" --addr "127.0.0.1:$port" "$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	ADDR=http://127.0.0.1:$port
	for _ in $(seq 1 200); do
		grep -q "listening: addr=" "$WORK/$name.log" && return 0
		sleep 0.05
	done
	cat "$WORK/$name.log"
	echo "$name did not start"
	exit 1
}

# bench LABEL URL: one `wasmtask bench` run. A run that fails (under load
# an election can refuse submits: "leadership lost while committing log")
# is reported with the nodes' last log lines, and the other scenarios still
# run: set -e ended the script there, without the figures still to come.
FAILED=0
bench() {
	local label=$1 url=$2 rc=0
	"$BIN" bench --server "$url" "${ARGS[@]}" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "=== $label: wasmtask bench failed (exit $rc); last lines of each server's log:"
		for f in "$WORK"/*.log; do
			echo "--- $(basename "$f")"
			tail -n 5 "$f"
		done
		FAILED=1
	fi
}

wait_leader() {
	for _ in $(seq 1 200); do
		"$BIN" cluster status --server "$1" 2>/dev/null | grep -q "^node .*, leader n1" && return 0
		sleep 0.05
	done
	echo "no leader"
	exit 1
}

for round in $(seq 1 "$ROUNDS"); do
	echo "=== round $round: one node (serve), $(nproc) CPUs"
	start single
	bench "round $round, one node" "$ADDR"
	stop_all
	rm -rf "${WORK:?}"/single "${WORK:?}"/single.log

	echo "=== round $round: three nodes (serve --node-id), through the leader"
	start n1 --node-id n1 --raft-addr "127.0.0.1:$(free_port)" --bootstrap
	LEADER=$ADDR
	wait_leader "$LEADER"
	start n2 --node-id n2 --raft-addr "127.0.0.1:$(free_port)" --join "$LEADER"
	FOLLOWER=$ADDR
	start n3 --node-id n3 --raft-addr "127.0.0.1:$(free_port)" --join "$LEADER"
	for _ in $(seq 1 200); do
		[ "$("$BIN" cluster status --server "$LEADER" | grep -c 'applied')" -eq 3 ] && break
		sleep 0.05
	done
	"$BIN" cluster status --server "$LEADER" || true
	bench "round $round, through the leader" "$LEADER"
	echo "=== round $round: three nodes, through a follower"
	bench "round $round, through a follower" "$FOLLOWER"
	stop_all
	rm -rf "${WORK:?}"/n1 "${WORK:?}"/n2 "${WORK:?}"/n3 "${WORK:?}"/n[123].log
done
exit "$FAILED"

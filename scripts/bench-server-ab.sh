#!/usr/bin/env bash
# make bench-server-ab: `wasmtask bench` against fresh servers of two builds,
# alternating, so that both see the same machine (a shared or busy machine
# shifts both alike). Each scenario runs on its own fresh server (no-op WAT
# handler, fsync on): 32 clients submitting one task per request, batches,
# and submit -> wait latency at a steady offered rate. Besides the bench's
# rows it prints the CPU seconds the server and the bench client used, per
# task: a figure that moves less with the machine's load than tasks/s do.
#
#   scripts/bench-server-ab.sh [BASE_REF]       base: a git ref (default main)
#   BASE_BIN=path NEW_BIN=path scripts/bench-server-ab.sh
#
# ROUNDS (default 3), TASKS (default 20000), BATCH (default 5000), RATE
# (default 1000), DURATION (default 5s), SCENARIOS (default "32 batch wait"),
# BENCH_FLAGS (extra `wasmtask bench` flags, e.g. "--instances reuse") and
# SERVE_FLAGS (extra `wasmtask serve` flags) tune it. The bench client of
# each run is the build under test (its client settings are part of it),
# unless BENCH_BIN names one binary to run every bench (the servers alone
# compared).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
TASKS=${TASKS:-20000}
BATCH=${BATCH:-5000}
RATE=${RATE:-1000}
DURATION=${DURATION:-5s}
SCENARIOS=${SCENARIOS:-32 batch wait}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wasmtask-ab.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

if [ -z "${BASE_BIN:-}" ]; then
	ref=${1:-main}
	git archive --format=tar "$ref" | tar -x -C "$TMP" --one-top-level=base
	(cd "$TMP/base" && go build -o "$TMP/wasmtask-base" ./cmd/wasmtask)
	BASE_BIN=$TMP/wasmtask-base
	BASE_NAME="base ($ref $(git rev-parse --short "$ref"))"
else
	BASE_NAME="base ($BASE_BIN)"
fi
if [ -z "${NEW_BIN:-}" ]; then
	go build -o "$TMP/wasmtask-new" ./cmd/wasmtask
	NEW_BIN=$TMP/wasmtask-new
	NEW_NAME="new (work tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +changes))"
else
	NEW_NAME="new ($NEW_BIN)"
fi

# run BIN SCENARIO: one scenario against a fresh server; prints the bench's
# result row and the CPU of both sides.
run() {
	local bin=$1 scenario=$2 args
	case $scenario in
	32) args=(--tasks "$TASKS" --clients 32 --batch 0 --rates "") ;;
	1) args=(--tasks "$((TASKS / 10))" --clients 1 --batch 0 --rates "") ;;
	batch) args=(--tasks "$TASKS" --clients "" --batch "$BATCH" --rates "") ;;
	wait) args=(--tasks 1 --clients "" --batch 0 --rates "$RATE" --duration "$DURATION") ;;
	*) echo "unknown scenario $scenario (want 1, 32, batch or wait)" >&2; exit 2 ;;
	esac
	local work=$TMP/run
	rm -rf "$work" && mkdir -p "$work"
	# shellcheck disable=SC2086
	"$bin" serve --data-dir "$work/data" --addr 127.0.0.1:0 ${SERVE_FLAGS:-} >"$work/log" 2>&1 &
	local pid=$! addr=""
	for _ in $(seq 1 200); do
		addr=$(sed -n 's/.*listening: addr=\(http:[^ ]*\).*/\1/p' "$work/log" | head -1)
		[ -n "$addr" ] && break
		sleep 0.05
	done
	if [ -z "$addr" ]; then
		cat "$work/log" >&2
		kill "$pid" 2>/dev/null || true
		exit 1
	fi
	local tasks=$TASKS
	[ "$scenario" = 1 ] && tasks=$((TASKS / 10))
	if [ "$scenario" = wait ]; then
		tasks=$(awk -v r="$RATE" -v d="${DURATION%s}" 'BEGIN{print 2*int(r*d)}')
	fi
	local before
	before=$(awk '{print $14+$15}' "/proc/$pid/stat")
	local TIMEFORMAT='%U %S'
	# shellcheck disable=SC2086
	{ time "${BENCH_BIN:-$bin}" bench --server "$addr" "${args[@]}" ${BENCH_FLAGS:-} >"$work/out" 2>/dev/null; } 2>"$work/time" || true
	local after
	after=$(awk '{print $14+$15}' "/proc/$pid/stat")
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local row
	if [ "$scenario" = wait ]; then
		row=$(grep -E '^ +[0-9]+/s +wait' "$work/out" | awk '{printf "p50 %s ms  p90 %s ms  p99 %s ms  max %s ms", $6, $7, $8, $9}')
	else
		row=$(grep -E 'POST /v1/tasks' "$work/out" | awk '{printf "%8s submitted/s %8s done/s", $(NF-1), $NF}')
	fi
	[ -n "$row" ] || row="(no result: $(tail -1 "$work/out"))"
	local tck
	tck=$(getconf CLK_TCK)
	awk -v row="$row" -v s="$((after - before))" -v tck="$tck" -v c="$(cat "$work/time")" -v n="$tasks" 'BEGIN{
		split(c, a, " "); cli = a[1] + a[2]; srv = s / tck
		printf "%s   cpu µs/task server %4.0f client %4.0f\n", row, srv / n * 1e6, cli / n * 1e6 }'
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs; $BASE_NAME vs $NEW_NAME"
echo "# tasks $TASKS, batch $BATCH, latency at $RATE/s for $DURATION; bench flags: ${BENCH_FLAGS:-none}; serve flags: ${SERVE_FLAGS:-none}; bench client: ${BENCH_BIN:-each build its own}"
for round in $(seq 1 "$ROUNDS"); do
	for scenario in $SCENARIOS; do
		for side in base new; do
			if [ $side = base ]; then bin=$BASE_BIN; else bin=$NEW_BIN; fi
			printf '%-6s %-5s round %d load %-5s  %s\n' "$scenario" "$side" "$round" "$(cut -d' ' -f1 /proc/loadavg)" "$(run "$bin" "$scenario")"
		done
	done
done

#!/usr/bin/env bash
# make demo: build wasmtask and the example plugins, start a server on a
# temporary data dir watching the examples, run example tasks (one that
# retries), show where to look next, and stop cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin/wasmtask
OUT=$ROOT/examples/out

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building wasmtask and the Go example plugins"
go build -o "$BIN" ./cmd/wasmtask
scripts/build-examples.sh go

# shellcheck source=scripts/serverlib.sh
. scripts/serverlib.sh
step "starting: wasmtask serve --data-dir <temporary>/data --plugins examples/out"
start_server demo --plugins "$OUT" --workers 4
export WASMTASK_SERVER=$ADDR
echo "server at $ADDR"

# The watched folder is loaded in the background: wait until the three
# plugins are active (plugin list shows "(loading)" before).
for _ in $(seq 1 600); do
	n=$("$BIN" plugin list | awk '($1=="uppercase"||$1=="retry"||$1=="coordinator") && $2 ~ /^sha256:/ {print $1}' | sort -u | wc -l)
	[ "$n" = 3 ] && break
	sleep 0.1
done
"$BIN" plugin list | awk 'NR==1 || $1=="uppercase" || $1=="retry" || $1=="coordinator"'

step "submit uppercase --input 'hello from wasmtask' --wait"
"$BIN" submit uppercase --input "hello from wasmtask" --wait

step "submit retry --max-attempts 3 --backoff fixed:200ms --wait   (fails twice, then succeeds)"
"$BIN" submit retry --id demo-retry --max-attempts 3 --backoff fixed:200ms --wait

step "20 tasks at once, then wait for all of them"
ids=()
for i in $(seq 1 20); do ids+=("$("$BIN" submit uppercase --input "task $i" --priority $((i % 3)))"); done
"$BIN" wait "${ids[@]}" | tail -3
echo "... all ${#ids[@]} completed"

step "a workflow from a handler: coordinator fans out 10 children and a fan-in that runs after them"
"$BIN" submit coordinator --id demo-workflow --input '{"items": 10}' >/dev/null
while :; do
	line=$("$BIN" list --limit 20 | awk 'NR>1 && $1 ~ /^demo-workflow/ {n++; if ($2=="completed") d++} END {printf "%d/%d", d, n}')
	printf '\r  workflow progress: %s tasks completed' "$line"
	state=$("$BIN" get demo-workflow --json | sed -n 's/^  "state": "\(.*\)",/\1/p')
	case "$state" in completed|failed|canceled) break ;; esac
	sleep 0.2
done
echo
"$BIN" get demo-workflow | sed -n 1,5p   # sed reads it all: no SIGPIPE under pipefail
echo "  children: $("$BIN" get demo-workflow --json | tr -d ' \n' | sed -n 's/.*"children":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | grep -c .), state: $state"

step "wasmtask list --limit 5"
"$BIN" list --limit 5

step "metrics (excerpt of $ADDR/metrics)"
curl -fsS "$ADDR/metrics" | grep -E '^wasmtask_(tasks_submitted_total|runs\{state="completed"\}|attempts_total|wal_fsyncs_total)' | head -8 || true

step "stopping the demo server (SIGTERM: drain, then exit)"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
status=$?
SERVER_PID=""
tail -2 "$LOG"

# The demo's server and data dir are gone: what follows starts a server
# of your own.
step "where to look next"
cat <<'TXT'
  bin/wasmtask serve --plugins examples/out &   # a server on 127.0.0.1:7070, data in ./wasmtask-data
  bin/wasmtask submit retry --max-attempts 3 --backoff fixed:500ms --wait   # fails twice, then completes
  bin/wasmtask list                             # tasks, newest first
  bin/wasmtask get ID                           # one task: runs, attempts, logs, output
  curl -s 127.0.0.1:7070/metrics                # Prometheus metrics
  open http://127.0.0.1:7070/ui/                # the dashboard
  docs/README.md                                # task spec, HTTP API, CLI, manifests
TXT
echo "demo finished (server exit $status)"
exit "$status"

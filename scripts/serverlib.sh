# Sourced by demo.sh and bench-server.sh: start `wasmtask serve` on a free
# port in a temporary folder and stop it on exit.
#   start_server NAME [serve flags...]   sets WORK, LOG, SERVER_PID, ADDR
# BIN must name the wasmtask binary.

cleanup_server() {
	if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "${WORK:-}"
}

start_server() {
	local name=$1
	shift
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/wasmtask-$name.XXXXXX")
	LOG=$WORK/serve.log
	trap cleanup_server EXIT
	"$BIN" serve --data-dir "$WORK/data" --addr 127.0.0.1:0 "$@" >"$LOG" 2>&1 &
	SERVER_PID=$!
	ADDR=""
	for _ in $(seq 1 200); do
		ADDR=$(sed -n 's/.*listening: addr=\(http:[^ ]*\).*/\1/p' "$LOG" | head -1)
		[ -n "$ADDR" ] && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG"; echo "$name: the server exited"; exit 1; }
		sleep 0.05
	done
	cat "$LOG"
	echo "$name: the server did not start"
	exit 1
}

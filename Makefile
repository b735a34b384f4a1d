# wasmtask: `make test` is what CI runs (.ci/run); `make bench` measures.
GO ?= go
BENCHTIME ?= 2s

.PHONY: test vet unit soak bench bench-server bench-server-ab bench-cluster e2e-tls fuzz build clean wasm toolchains demo examples extism-plugins

test: vet unit e2e-tls

vet:
	$(GO) vet ./...

# Go's default of 10 minutes per package is close to what dispatch and e2e
# take under -race on a loaded 2-core machine; the suite's budget is 20
# minutes in all, so a package may take up to that.
unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# The long crash soak (e2e/soak_test.go, not in `make test`): SOAK_CYCLES
# kill -9 cycles of the real binary under load, then every acknowledged task
# is checked; the figures are logged as SOAK: lines.
SOAK_CYCLES ?= 1000
soak:
	WASMTASK_SOAK_CYCLES=$(SOAK_CYCLES) $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./e2e/

# Benchmarks of the WAL, side by side with a raw write+fsync baseline on the
# same disk. Set BENCHDIR to measure another filesystem (default: the OS temp dir).
# Benchmarks of the host: one attempt side by side with bare wazero (host/bench_test.go).
# Benchmarks of the engine (dispatch/bench_test.go): no-op tasks end to end
# with fsync on (tasks/s, fsyncs and WAL bytes per task), recovery of a
# 1M-event log, snapshots, the event codec.
bench:
	$(GO) test -run='^$$' -bench=. -benchtime=$(BENCHTIME) -benchmem ./segwal/ ./host/ ./dispatch/

# The whole server through its HTTP API (scripts/bench-server.sh, `wasmtask bench`):
# tasks/s with 1 and 32 clients and with batch submits, latency at 200/s and 1000/s.
bench-server:
	scripts/bench-server.sh

# The same scenarios against fresh servers of two builds, alternating (base:
# BASE, a git ref, default main; new: the work tree), with the CPU the server
# and the bench client used per task (scripts/bench-server-ab.sh; ROUNDS,
# TASKS, BENCH_FLAGS, SERVE_FLAGS, SCENARIOS tune it).
BASE ?= main
bench-server-ab:
	scripts/bench-server-ab.sh $(BASE)

# One server against a three-node cluster on loopback (scripts/bench-cluster.sh,
# `wasmtask bench`, fsync on): tasks/s and submit latency p50/p99, alternating.
bench-cluster:
	scripts/bench-cluster.sh

# The end-to-end suite with every server serving HTTPS (a self-signed test
# certificate that every client of the suite trusts). Part of `make test`
# (about two minutes, without -race): out of it, an HTTPS cluster that
# could not form went unseen.
e2e-tls:
	WASMTASK_E2E_TLS=1 $(GO) test -count=1 ./e2e/

# Short run of the frame-reader fuzzer; FUZZTIME=10m for a longer one.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzReader -fuzztime=$(FUZZTIME) ./segwal/

# The version --version, GET /v1/engine and wasmtask_build_info report;
# without it the binary falls back to the VCS revision Go recorded.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/wasmtask ./cmd/wasmtask

clean:
	rm -rf bin

# Guest toolchains for non-Go examples and test modules (idempotent).
toolchains:
	scripts/toolchains.sh

# Regenerates the checked-in test modules from their .wat sources.
wasm:
	scripts/toolchains.sh wat
	for f in host/testdata/*.wat e2e/testdata/*.wat; do wat2wasm "$$f" -o "$${f%.wat}.wasm"; done
	scripts/toolchains.sh c
	for f in host/testdata/*.c; do clang-14 --target=wasm32-wasi -O2 -Wl,--strip-all "$$f" -o "$${f%.c}.wasm"; done

# Regenerates the Extism test plugins (host/testdata/extism) from examples/extism.
extism-plugins:
	scripts/build-extism-plugins.sh

# The quick start: build, serve the examples, run tasks, stop.
demo:
	scripts/demo.sh

# Every example plugin, in every language, into examples/out.
examples:
	scripts/build-examples.sh

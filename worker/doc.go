// Package worker is the remote worker process (wasmtask worker): it leases
// attempts from a wasmtask server over its HTTP API (api.Client), runs them
// through the same host package as serve (limits, pools, command mode,
// Extism), heartbeats while they run and reports their results.
//
// # How an attempt runs
//
// A lease names the exact module version and manifest the server resolved
// (its active version at the lease, or the version the task pins), so a hot
// swap on the server changes only later attempts. The worker deploys that
// version in a local plugins.Registry kept in its cache directory (from the
// cache, or fetched from GET /v1/modules/{version} and checked against the
// hash before it compiles), once per version and manifest, and resolves the
// attempt to plugin@version; wazero's compiled code is kept in the cache
// directory too, so a restarted worker does not compile again. The guest
// sees the task as serve would show it (handler as submitted, run id,
// attempt, labels, parent); children it submits go back with the result
// and are committed with its success.
//
// # Failures
//
//   - Server unreachable (restart, network): the lease loop retries with
//     backoff (100ms doubling to 5s, jittered) and logs the outage once,
//     and its end once. Results are retried likewise; after a server restart
//     they are refused (409: the restarted server closed those attempts as
//     lost and retries them), and the worker drops them.
//   - Lease lost (the worker was stopped or cut off past the lease timeout):
//     the heartbeat answer (or its 409) says so and the worker stops the
//     attempt; its result, still sent, gets 409 and is logged and counted.
//   - Cancel or timeout on the server: the heartbeat answer lists the lease
//     under cancel; the attempt's context is canceled and its (cancelled)
//     result is reported.
//   - SIGTERM (Run's context ends): drain. No more leases; running attempts
//     get Config.DrainTimeout to finish and report; those still running are
//     stopped and reported lost, so the server retries them at once without
//     using their max_attempts. A lease request out is not abandoned (the
//     server may have granted leases only its answer names): a heartbeat
//     with draining has the server answer it now, and what it brought runs
//     (a server that does not answer that heartbeat in 2 s is given up on).
//
// # Lease-ahead
//
// While attempts run short the worker holds some leased beyond its
// concurrency, queued for its runners (aheadFor), and announces how many
// (WorkerHello.Ahead) so that the server leases them: concurrency x
// aheadWork (2 ms) / mean run time, at most maxAhead (256), none once
// attempts run long. A lease request goes out when half of that is free,
// so the other half covers the round trip. This is the one lease-ahead
// estimate: the server makes none (its "prefetch" is gone, see
// api/doc.go), because only the worker sees how fast its slots free and
// what a round trip costs it, and an attempt queued here starts the moment
// a slot frees.
//
// Tried and dropped (session 7): bounding it also by the finish rate
// (about 4-8 ms of attempts as they finish). With no-op attempts the rule
// above holds 256 (slots share the cores, so the mean run time overstates
// the rate), ~10-13 ms of lease -> start; the rate bound cut that by a
// third, but the server's CPU per remote attempt rose by about a sixth:
// smaller batches, and lease requests that found the server's queue not
// yet refilled took a few attempts each.
//
// Heartbeats carry every running lease in one request. Results ride on
// the next lease request (which waits up to 2 ms for the attempts the last
// lease started to finish), so a busy worker with short attempts costs the
// server one request per batch: its results in, the next leases out.
// Results that finish while a lease request is out (a long poll), or with
// no slot free, go to POST /v1/workers/result together; so do all of them
// against a server that predates results on lease requests (its answer
// lacks their fates).
package worker

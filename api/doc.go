// Package api is the HTTP JSON API and the Go client the CLI uses. It
// imports dispatch (the engine) and plugins (the registry). Every route,
// its parameters and answers are documented in docs/http-api.md (a test
// keeps that page in step with the routes), the task spec and the task
// view in docs/task-spec.md.
//
// # Routes
//
//	POST /v1/tasks                  submit (201 once durable, 200 identical resubmit, 409, 400)
//	POST /v1/tasks/batch            {"tasks": [spec...]} -> per-task results
//	GET  /v1/tasks/{id}             task view
//	GET  /v1/tasks/{id}/wait        long-poll until final (?timeout=30s, at most 5m; 503 once StopWaits)
//	GET  /v1/tasks                  ?state=&handler=&limit=&cursor= newest first
//	POST /v1/tasks/{id}/cancel      cancel the task (and its subtree)
//	POST /v1/tasks/{id}/after       add prerequisites (workflows)
//	PUT  /v1/plugins/{name}         deploy a module (raw body + X-Wasmtask-Manifest, or multipart)
//	GET  /v1/plugins[/{name}]       active version, history, attempt counts
//	POST /v1/plugins/{name}/rollback
//	POST /v1/engine/pause|resume, GET /v1/engine, GET /v1/engine/history
//	POST /v1/workers/lease|heartbeat|result, GET /v1/workers, GET /v1/modules/{version}
//	                                remote workers (broker.go, workers.go)
//	GET  /metrics, /healthz, /readyz, /ui/ (the dashboard)
//
// Errors are {"error": {"code", "message", "field"}} with a fitting status;
// an invalid spec names the field ("input" that is not valid UTF-8 is
// refused, pointing to input_b64, never silently changed). With a token,
// every route but /healthz needs "Authorization: Bearer <token>" (the
// scheme in any case). Bodies are size-limited; batch bodies are decoded
// as a stream, and those decoded at once share Config.BatchMemory (429
// with Retry-After past it; 413 past Config.MaxBatchBytes for one batch).
//
// FastListener (fastsubmit.go), used by wasmtask serve on plain listeners,
// answers the single submission (POST /v1/tasks of the plain HTTP/1.1
// form) without net/http, through the same handler, and hands every other
// connection to net/http with what it read of it. On a cluster node
// (ClusterFront.NewFastListener) it answers only while the node leads.
//
// # Remote workers
//
// A Broker is the engine's executor when remote workers may connect
// (wasmtask serve): attempts go to the server's own workers while one is
// free, else wait in one queue that remote lease requests (long polls)
// take from, each attempt exactly once. The engine's capacity follows the
// connected workers (Engine.SetCapacity), and Broker.Runnable keeps a run
// ready, unleased, while no worker can run its handler (none connected,
// none serving it, or a plugin placed "remote" on a server with its own
// workers), so a queued attempt does not burn its timeout. A lease is
// fenced by its id; a worker silent for the lease timeout loses it and
// the attempt ends lost (retried, without using max_attempts). The lease
// names the exact module version (the plugin's active version at the lease,
// or the pinned one), so a hot swap never changes a running attempt; the
// worker fetches it by hash (GET /v1/modules/{version}). A lease request
// may carry the results of finished attempts, applied before it leases, so
// one round trip frees a worker's slots and fills them. The hot path is
// written by hand both ways (workerjson.go, workerjson_decode.go): the
// lease response (each manifest encoded once per loaded version), the
// request bodies as the worker writes them (anything else is decoded with
// encoding/json), and the worker's requests (Client).
//
// With no local workers (serve --workers 0) the broker takes attempts
// asynchronously (dispatch.AsyncExecutor): no engine runner waits for each
// remote attempt, so the broker stops them itself. An attempt whose task
// is canceled, or whose deadline passes, while it is queued ends at the
// next lease request or expiry pass (a twentieth of the lease timeout, at
// most 500 ms); a leased one is marked for its worker to stop (told at
// its next heartbeat) and closed after min(2 s, lease timeout) if its
// result does not come. A remote attempt shows running from its worker's
// first heartbeat (its result says when it started). A server with local
// workers parks a runner per queued attempt (Execute), which its local
// workers take over.
//
// Lease-ahead: a worker whose attempts run short holds attempts leased
// beyond its concurrency, queued for its runners, and says how many in
// its hello ("ahead"); the server counts them in its capacity, and the
// worker sends its next lease request (carrying the results finished
// meanwhile) when half of what it may hold is free, so the other half runs
// during the round trip and each request carries many results and leases.
// The worker sizes it (package worker: about 2 ms of work at its mean run
// time, at most 256, none once attempts run long). The server makes no estimate
// of its own. It did (session 5: "prefetch", leasing as many again as a
// worker's concurrency while its attempts ran under 10 ms on the server's
// measure), and the two estimates added up in the capacity, each blind to
// the other. The worker's was kept because only the worker sees what
// decides it: how fast its slots free (its cores, shared or not), its
// round trip to the server, and whether an attempt can start the moment
// a slot frees (one queued on the worker can; one queued on the server
// waits a round trip). An older worker, which sends no "ahead", gets its
// concurrency only: correct, but with short attempts its slots idle
// during each round trip (WorkerInfo.Prefetch stays in GET /v1/workers,
// always 0).
//
// Deviation from a per-handler capacity: the engine bounds attempts in
// flight as a whole (SetCapacity: local workers plus every worker's
// concurrency and ahead) and leases ready runs in priority order, and
// Runnable only says whether some worker serves a handler at all. So with
// workers serving different handlers (A: "a", B: "b") a backlog of "a"
// ahead of "b" fills every slot with "a" attempts: A runs its share, the
// rest wait in the queue for A (their timeouts running) and B idles until
// the "a" backlog is leased. Workaround: give such workers their own
// server. The fix needs the engine: Runnable refusing a handler whose
// queued attempts already fill the free slots of the workers serving it,
// and machine.Core parking refused runs per handler, with a call (a loop
// input) that brings back the best n of one handler when a slot of its
// workers frees. With today's single parked list each such wake-up would
// re-push every parked run and lease pass would pop them all again,
// O(backlog) per freed slot.
package api

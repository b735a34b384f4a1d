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
//	GET  /metrics, /healthz, /readyz, /ui/ (the dashboard)
//
// Errors are {"error": {"code", "message", "field"}} with a fitting status;
// an invalid spec names the field ("input" that is not valid UTF-8 is
// refused, pointing to input_b64, never silently changed). With a token,
// every route but /healthz needs "Authorization: Bearer <token>" (the
// scheme in any case). Bodies are size-limited; batch bodies are decoded
// as a stream, and those decoded at once share Config.BatchMemory (429
// with Retry-After past it; 413 past Config.MaxBatchBytes for one batch).
package api

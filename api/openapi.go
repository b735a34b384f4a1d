package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmtask/wasmtask/plugins"
)

// The OpenAPI 3.1 document of GET /v1/openapi.json is built from the table
// below and from the Go types the handlers encode and decode (schemas by
// reflection over their json tags), so it cannot drift from the types.
// openapi_test.go checks that every route the server registers is in the
// table and every documented route exists, and that every example decodes
// strictly into its type.

// opDoc documents one route.
type opDoc struct {
	method, path, summary string
	query                 []paramDoc
	request               any    // a value of the request body's type; nil: no JSON body
	requestType           string // content type when not JSON (e.g. application/wasm)
	requestExample        string
	responses             []respDoc
}

type paramDoc struct{ name, desc string }

type respDoc struct {
	status  int
	desc    string
	body    any // a value of the response body's type; nil: none or not JSON
	example string
}

var errorResponses = []respDoc{{400, "invalid request: the error names the field", ErrorBody{}, `{"error":{"code":"invalid","message":"handler: required","field":"handler"}}`},
	{401, "missing or wrong bearer token", ErrorBody{}, ""}}

// writeUnavailable are the answers of a submission the server cannot store.
var writeUnavailable = []respDoc{{503, "shutting down, or a failed fsync stopped the engine (the message names it)", ErrorBody{}, ""},
	{507, "the data dir's disk is full: the message names the directory and its free space; accepted again once space is freed", ErrorBody{},
		`{"error":{"code":"insufficient_storage","message":"disk full: data dir /var/lib/wasmtask/engine has 12.0 MiB free (new work is refused below 64.0 MiB); free space there, new submissions are accepted again by themselves"}}`}}

// ErrorBody is the shape of every error response.
type ErrorBody struct {
	Error Error `json:"error"`
}

const taskViewExample = `{"id":"t1","handler":"uppercase","state":"completed","runs":[{"id":"t1/1","index":1,"state":"completed",` +
	`"attempts":[{"number":1,"outcome":"ok","module":"sha256:ab","started_at":"2026-12-04T10:00:00.001Z","finished_at":"2026-12-04T10:00:00.002Z"}]}],` +
	`"output":"HELLO","children":[],"parent":"","submitted_at":"2026-12-04T10:00:00Z","max_attempts":1,"priority":0}`

func apiDocs() []opDoc {
	taskResp := []respDoc{{200, "the task view", TaskView{}, taskViewExample}, {404, "no such task", ErrorBody{}, ""}}
	return []opDoc{
		{method: "POST", path: "/v1/tasks", summary: "Submit a task spec; answered once it is durable (with wait, once it is final or the wait passed)",
			query:   []paramDoc{{"wait", "Go duration (at most 5m): answer once the task is final or this long passed, with its view then (the status is the submission's: 201 or 200)"}},
			request: TaskSpec{}, requestExample: `{"id":"t1","handler":"uppercase","input":"hello","max_attempts":3,"timeout":"30s","labels":{"team":"a"}}`,
			responses: append([]respDoc{{201, "created (durable)", TaskView{}, taskViewExample}, {200, "identical resubmit of an existing id", TaskView{}, ""},
				{409, "another spec under this id", ErrorBody{}, ""}}, append(errorResponses, writeUnavailable...)...)},
		{method: "POST", path: "/v1/tasks/batch", summary: "Submit many task specs together; each gets its own status",
			request: batchRequest{}, requestExample: `{"tasks":[{"handler":"uppercase","input":"a"},{"handler":"uppercase","input":"b"}]}`,
			responses: append([]respDoc{{200, "one result per task, in order", batchResponse{}, `{"results":[{"id":"01J","status":201},{"id":"01K","status":201}]}`}}, append(errorResponses, writeUnavailable...)...)},
		{method: "GET", path: "/v1/tasks", summary: "List tasks, newest first, paginated",
			query: []paramDoc{{"state", "pending, running, waiting_children, completed, failed or canceled"}, {"handler", "plugin name"},
				{"limit", "1 to 1000 (default 100)"}, {"cursor", "next_cursor of the previous page"},
				{"label", "key=value: only tasks with this label (repeatable; all must match)"},
				{"id", "only tasks whose id contains this text"}},
			responses: append([]respDoc{{200, "a page of task views", TaskList{}, `{"tasks":[],"next_cursor":""}`}}, errorResponses...)},
		{method: "GET", path: "/v1/tasks/{id}", summary: "A task's view", responses: taskResp},
		{method: "GET", path: "/v1/tasks/{id}/wait", summary: "Block until the task is final or the timeout passes, then return its view",
			query: []paramDoc{{"timeout", "Go duration (default 30s, at most the server's maximum)"}}, responses: taskResp},
		{method: "POST", path: "/v1/tasks/{id}/cancel", summary: "Cancel the task and its subtree", responses: taskResp},
		{method: "POST", path: "/v1/tasks/{id}/retry", summary: "Start a failed or canceled task again: a new run for each run that did not complete, recorded in the WAL (task_retried); the view counts retries",
			responses: []respDoc{{200, "the task view with its new runs", TaskView{}, ""}, {404, "no such task", ErrorBody{}, ""},
				{409, "the task is not final, completed, a child (retry its root), a cron task, or waits for a failed prerequisite", ErrorBody{}, ""},
				writeUnavailable[0], writeUnavailable[1]}},
		{method: "DELETE", path: "/v1/tasks/{id}", summary: "Delete a final task and its subtree now (durable; retention does the same later)",
			responses: []respDoc{{200, "how many tasks were deleted", DeleteResult{}, `{"id":"t1","deleted":1}`}, {404, "no such task", ErrorBody{}, ""},
				{409, "the task (or its root) is not final", ErrorBody{}, ""}}},
		{method: "POST", path: "/v1/tasks/purge", summary: "Delete every final task matching the filters (and its subtree); an empty body purges every final task",
			request: PurgeRequest{}, requestExample: `{"states":["completed"],"handler":"uppercase","labels":{"team":"a"},"older_than":"24h"}`,
			responses: append([]respDoc{{200, "how many tasks were deleted", PurgeResult{}, `{"purged":12}`}}, errorResponses...)},
		{method: "POST", path: "/v1/tasks/{id}/after", summary: "Add prerequisites to a task that has not started (all or nothing)",
			request: afterRequest{}, requestExample: `{"after":["fetch","build"]}`,
			responses: append([]respDoc{{200, "the task view with its prerequisites", TaskView{}, ""}, {404, "no such task", ErrorBody{}, ""}}, errorResponses...)},
		{method: "PUT", path: "/v1/plugins/{name}", summary: "Deploy a module: validate, store, activate. Body: the .wasm bytes (manifest in the X-Wasmtask-Manifest header) or multipart/form-data with parts module and manifest",
			requestType: "application/wasm",
			responses: append([]respDoc{{200, "the activated version", plugins.DeployResult{}, `{"name":"uppercase","version":"sha256:ab","changed":true}`},
				{413, "module too large", ErrorBody{}, ""}}, errorResponses...)},
		{method: "GET", path: "/v1/plugins", summary: "Every plugin: active version, history, attempt counts",
			responses: []respDoc{{200, "the plugins", pluginList{}, `{"plugins":[{"name":"uppercase","active":"sha256:ab","history":[]}]}`}}},
		{method: "GET", path: "/v1/plugins/{name}", summary: "One plugin",
			responses: []respDoc{{200, "the plugin", plugins.Info{}, `{"name":"uppercase","active":"sha256:ab","history":[]}`}, {404, "no such plugin", ErrorBody{}, ""}}},
		{method: "POST", path: "/v1/plugins/{name}/rollback", summary: "Re-activate the previous version, or the version named in the body",
			request: rollbackRequest{}, requestExample: `{"version":"sha256:ab"}`,
			responses: append([]respDoc{{200, "the activated version", plugins.DeployResult{}, ""}, {404, "no such plugin or version", ErrorBody{}, ""}}, errorResponses...)},
		{method: "POST", path: "/v1/engine/pause", summary: "Stop starting attempts (running ones finish)", responses: []respDoc{{200, "engine status", EngineStatus{}, ""}}},
		{method: "POST", path: "/v1/engine/resume", summary: "Start attempts again", responses: []respDoc{{200, "engine status", EngineStatus{}, ""}}},
		{method: "GET", path: "/v1/engine", summary: "Engine status and counters",
			responses: []respDoc{{200, "engine status", EngineStatus{}, `{"paused":false,"tasks":3,"runs":{"completed":3},"in_flight":0,"wal_seq":12,"events":12,"recovery":{"events_replayed":0,"snapshot_seq":0,"seconds":0.003,"torn_tail_bytes":0}}`}}},
		{method: "GET", path: "/v1/engine/history", summary: "Samples of the engine's counters over the last hour (the dashboard's chart)",
			responses: []respDoc{{200, "samples, oldest first", History{}, `{"interval":"10s","points":[{"time":"2026-12-04T10:00:00Z","submitted":3,"completed":3,"failed":0,"in_flight":0}]}`}}},
		{method: "GET", path: "/v1/cluster", summary: "Cluster mode: the node's role, term, leader, commit and applied index, and each member's applied index and lag",
			query:     []paramDoc{{"local", "1: this node's own view only (no member is asked)"}, {"digest", "1: add a SHA-256 of this node's committed state (digest, digest_seq)"}},
			responses: []respDoc{{200, "the cluster status", ClusterStatus{}, clusterExample}}},
		{method: "POST", path: "/v1/cluster/servers", summary: "Cluster mode: add a voter (serve --join sends this); forwarded to the leader",
			request: JoinRequest{}, requestExample: `{"id":"n4","raft_addr":"127.0.0.1:7104","http":"http://127.0.0.1:7074"}`,
			responses: []respDoc{{200, "the cluster status after the change", ClusterStatus{}, ""}, {400, "id or raft_addr missing", ErrorBody{}, ""}, {503, "no leader", ErrorBody{}, ""}}},
		{method: "DELETE", path: "/v1/cluster/servers/{id}", summary: "Cluster mode: remove a server from the configuration; forwarded to the leader",
			responses: []respDoc{{200, "the cluster status after the change", ClusterStatus{}, ""}, {404, "no such server", ErrorBody{}, ""}, {503, "no leader", ErrorBody{}, ""}}},
		{method: "POST", path: "/v1/workers/lease", summary: "Remote workers: lease up to max attempts of the handlers the worker serves, waiting up to wait_ms (long poll) for the first; results of finished attempts may ride along (applied first, their fates in results)",
			request: LeaseRequest{}, requestExample: `{"worker":"a1b2c3","name":"box-1","handlers":["resize"],"concurrency":8,"max":8,"wait_ms":5000}`,
			responses: append([]respDoc{{200, "the leases (none when none came in time)", LeaseResponse{},
				`{"leases":[{"lease":"t1#1.1.9f2c","task":"t1","run":"t1#1","attempt":1,"max_attempts":3,"handler":"resize","plugin":"resize","version":"sha256:ab","input":"aGk=","timeout_ms":30000,"remaining_ms":29990}],"lease_timeout_ms":10000,"heartbeat_ms":2500}`},
				{503, "the server is shutting down: back off and retry", ErrorBody{}, ""}}, errorResponses...)},
		{method: "POST", path: "/v1/workers/heartbeat", summary: "Remote workers: renew leases; the answer lists leases to stop (canceled or timed out) and leases no longer live",
			request: HeartbeatRequest{}, requestExample: `{"worker":"a1b2c3","name":"box-1","concurrency":8,"leases":["t1#1.1.9f2c"]}`,
			responses: append([]respDoc{{200, "renewed", HeartbeatResponse{}, `{"cancel":[],"lost":[],"lease_timeout_ms":10000,"heartbeat_ms":2500}`},
				{409, "no lease named is live (expired, superseded, finished or unknown): stop those attempts", ErrorBody{}, ""}}, errorResponses...)},
		{method: "POST", path: "/v1/workers/result", summary: "Remote workers: report finished attempts (outcome, output, log, children); a result posted twice is applied once",
			request: ResultRequest{}, requestExample: `{"worker":"a1b2c3","name":"box-1","concurrency":8,"results":[{"lease":"t1#1.1.9f2c","outcome":"ok","output":"SEk=","module":"sha256:ab"}]}`,
			responses: append([]respDoc{{200, "per result: applied, duplicate or conflict", ResultResponse{}, `{"results":[{"lease":"t1#1.1.9f2c","status":"applied"}]}`},
				{409, "no result was applied: every lease named expired, was superseded or is unknown (the attempt was retried elsewhere)", ErrorBody{}, ""}}, errorResponses...)},
		{method: "GET", path: "/v1/workers", summary: "Remote workers: name, address, handlers, concurrency, in flight, last heartbeat, attempts done, failed and lost",
			responses: []respDoc{{200, "the workers, connected ones first", WorkerList{}, `{"workers":[],"local_workers":16,"queued":0,"lease_timeout_ms":10000}`},
				{404, "the server takes no remote workers", ErrorBody{}, ""}}},
		{method: "GET", path: "/v1/modules/{version}", summary: "Remote workers: a deployed module's bytes by version (sha256:<hex>); the worker checks the hash before it compiles",
			responses: append([]respDoc{{200, "the module (application/wasm)", nil, ""}, {404, "no stored module has this version", ErrorBody{}, ""}}, errorResponses...)},
		{method: "GET", path: "/v1/openapi.json", summary: "This document", responses: []respDoc{{200, "OpenAPI 3.1", nil, ""}}},
		{method: "GET", path: "/ui/", summary: "The dashboard (static files; no token needed for them)", responses: []respDoc{{200, "HTML, JavaScript, CSS", nil, ""}}},
		{method: "GET", path: "/ui", summary: "Redirect to /ui/", responses: []respDoc{{301, "to /ui/", nil, ""}}},
		{method: "GET", path: "/metrics", summary: "Prometheus metrics", responses: []respDoc{{200, "text exposition format", nil, ""}}},
		{method: "GET", path: "/healthz", summary: "Liveness (no token needed)", responses: []respDoc{{200, "alive", map[string]string{}, `{"status":"ok"}`}}},
		{method: "GET", path: "/readyz", summary: "Readiness: after recovery, until shutdown", responses: []respDoc{{200, "ready", map[string]string{}, `{"status":"ready"}`}, {503, "recovering, stopping, or read-only after a failed fsync (the message names the error)", ErrorBody{}, ""}}},
	}
}

const clusterExample = `{"node_id":"n1","role":"leader","term":2,"leader":"n1","leader_http":"http://127.0.0.1:7070","last_index":40,"commit_index":40,"applied_index":40,"applied_seq":150,"tasks":30,"last_contact_ms":0,` +
	`"servers":[{"id":"n1","raft_addr":"127.0.0.1:7101","http":"http://127.0.0.1:7070","voter":true,"leader":true,"applied_index":40,"lag":0},` +
	`{"id":"n2","raft_addr":"127.0.0.1:7102","http":"http://127.0.0.1:7071","voter":true,"leader":false,"applied_index":39,"lag":1}]}`

// Request and response bodies that have no named type in the handlers.
type (
	batchRequest struct {
		Tasks []TaskSpec `json:"tasks"`
	}
	batchResponse struct {
		Results []BatchResult `json:"results"`
	}
	afterRequest struct {
		After []string `json:"after"`
	}
	rollbackRequest struct {
		Version string `json:"version,omitempty"`
	}
	pluginList struct {
		Plugins []plugins.Info `json:"plugins"`
	}
)

var openAPIOnce = sync.OnceValue(func() []byte {
	b, err := json.MarshalIndent(openAPIDocument(), "", "  ")
	if err != nil {
		panic(err) // the document is built from fixed tables
	}
	return b
})

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIOnce())
}

// openAPIDocument builds the OpenAPI 3.1 document.
func openAPIDocument() map[string]any {
	schemas := map[string]any{}
	paths := map[string]map[string]any{}
	for _, op := range apiDocs() {
		o := map[string]any{"summary": op.summary, "operationId": operationID(op)}
		var params []any
		for _, name := range pathParams(op.path) {
			params = append(params, map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range op.query {
			params = append(params, map[string]any{"name": q.name, "in": "query", "description": q.desc, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			o["parameters"] = params
		}
		if op.request != nil {
			media := map[string]any{"schema": schemaOf(reflect.TypeOf(op.request), schemas)}
			if op.requestExample != "" {
				media["example"] = json.RawMessage(op.requestExample)
			}
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": media}}
		} else if op.requestType != "" {
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				op.requestType:        map[string]any{"schema": map[string]any{"type": "string", "contentMediaType": op.requestType}},
				"multipart/form-data": map[string]any{"schema": map[string]any{"type": "object", "properties": map[string]any{"module": map[string]any{"type": "string", "contentMediaType": "application/wasm"}, "manifest": map[string]any{"type": "string", "contentMediaType": "application/json"}}, "required": []string{"module"}}},
			}}
		}
		responses := map[string]any{}
		for _, r := range op.responses {
			resp := map[string]any{"description": r.desc}
			if r.body != nil {
				media := map[string]any{"schema": schemaOf(reflect.TypeOf(r.body), schemas)}
				if r.example != "" {
					media["example"] = json.RawMessage(r.example)
				}
				resp["content"] = map[string]any{"application/json": media}
			}
			responses[strconv.Itoa(r.status)] = resp
		}
		o["responses"] = responses
		if strings.HasPrefix(op.path, "/v1/") {
			o["security"] = []any{map[string]any{"bearer": []string{}}}
		}
		if paths[op.path] == nil {
			paths[op.path] = map[string]any{}
		}
		paths[op.path][strings.ToLower(op.method)] = o
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "wasmtask HTTP API", "version": "v1",
			"description": "The HTTP API of `wasmtask serve`. With --token, every route but /healthz and the dashboard's files needs `Authorization: Bearer <token>`. Errors are {\"error\": {\"code\", \"message\", \"field\"}}."},
		"paths":      paths,
		"components": map[string]any{"schemas": schemas, "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}}},
	}
}

func operationID(op opDoc) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(op.method))
	for _, part := range strings.Split(op.path, "/") {
		part = strings.Trim(part, "{}")
		part = strings.NewReplacer(".", "_", "-", "_").Replace(part)
		if part == "" || part == "v1" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func pathParams(path string) []string {
	var out []string
	for _, part := range strings.Split(path, "/") {
		if strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}") {
			out = append(out, strings.Trim(part, "{}"))
		}
	}
	return out
}

var timeType = reflect.TypeOf(time.Time{})

// schemaOf returns the JSON Schema of t; named structs go to schemas and
// are referenced.
func schemaOf(t reflect.Type, schemas map[string]any) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Pointer:
		return schemaOf(t.Elem(), schemas)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), schemas)}
	case t.Kind() == reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), schemas)}
	case t.Kind() == reflect.String:
		return map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return map[string]any{"type": "integer"}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return map[string]any{"type": "number"}
	case t.Kind() == reflect.Interface:
		return map[string]any{}
	case t.Kind() != reflect.Struct:
		return map[string]any{}
	}
	name := schemaName(t)
	ref := map[string]any{"$ref": "#/components/schemas/" + name}
	if name == "" {
		return structSchema(t, schemas)
	}
	if _, done := schemas[name]; !done {
		schemas[name] = map[string]any{} // breaks cycles
		schemas[name] = structSchema(t, schemas)
	}
	return ref
}

func schemaName(t reflect.Type) string {
	if t.Name() == "" {
		return ""
	}
	name := t.Name()
	if pkg := t.PkgPath(); !strings.HasSuffix(pkg, "/api") {
		name = pkg[strings.LastIndex(pkg, "/")+1:] + "." + name
	}
	return strings.ReplaceAll(name, ".", "_")
}

func structSchema(t reflect.Type, schemas map[string]any) map[string]any {
	props := map[string]any{}
	var required []string
	var addFields func(t reflect.Type)
	addFields = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					addFields(ft)
					continue
				}
			}
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type, schemas)
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
	}
	addFields(t)
	out := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		sort.Strings(required)
		out["required"] = required
	}
	return out
}
